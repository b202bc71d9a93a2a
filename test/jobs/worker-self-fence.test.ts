/**
 * Worker self-fencing (src/jobs/self-fence.ts): a worker whose writes keep failing stops computing and exits with
 * EXIT_SELF_FENCED before its lease runs out, writing nothing after its last successful write; one whose writes
 * fail for less than that carries on. Real forks of the built worker on a real SQLite file, made unwritable by
 * an exclusive transaction this test holds (the worker's writes then fail with SQLITE_BUSY).
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { MATRIX_ID_KEYWORD } from '../../src/ajv.js'
import { openDb } from '../../src/db.js'
import { NotFoundError } from '../../src/errors.js'
import matmul from '../../src/job-types/matmul.js'
import matpow from '../../src/job-types/matpow.js'
import { MATRIX_ID_MARK, matrixIdsOf, preloadedSource, preloadMatrices } from '../../src/jobs/matrix-inputs.js'
import { workerExecArgv } from '../../src/jobs/scheduler.js'
import { createFenceClock, EXIT_SELF_FENCED, fenceBudgetMs, SelfFenced } from '../../src/jobs/self-fence.js'
import type { StoredMatrix } from '../../src/jobs/contract.js'
import { type JobRow, type NewJob, WORKER_ENV } from '../../src/jobs/types.js'
import { tmpDb, waitFor } from '../fixtures/helpers.js'

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url))
const BUNDLE = `${DIST}jobs/worker-bundle.cjs`
// What the scheduler forks: the bundle when the build made one, else the plain module.
const ENTRY = existsSync(BUNDLE) ? BUNDLE : `${DIST}jobs/worker.js`

const HEARTBEAT_MS = 100
const LEASE_MS = 4000
const BUDGET_MS = fenceBudgetMs(LEASE_MS, HEARTBEAT_MS)

const job = (steps: number): NewJob =>
  ({ type: 'lyapunov', name: null, params: { seed: 3, n: 60, steps }, steps, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null })

function forkWorker (token: string, path: string) {
  const child = fork(ENTRY, [token], {
    execArgv: workerExecArgv([]),
    env: {
      ...process.env,
      [WORKER_ENV.dbPath]: path,
      [WORKER_ENV.heartbeatMs]: String(HEARTBEAT_MS),
      [WORKER_ENV.checkpointMs]: '300',
      [WORKER_ENV.leaseMs]: String(LEASE_MS),
      LOG_LEVEL: 'info'
    },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc']
  })
  const lines: Array<Record<string, unknown>> = []
  let buffered = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8')
    const parts = buffered.split('\n')
    buffered = parts.pop() ?? ''
    for (const line of parts) { try { lines.push(JSON.parse(line)) } catch {} }
  })
  return { child, lines }
}

/** What a write of the worker changes. */
const written = (r: JobRow) => ({ status: r.status, step: r.step, progress: r.progress, heartbeat_at: r.heartbeat_at, seq: r.seq, updated_at: r.updated_at })

t.test('the fence budget is the lease less max(2 heartbeats, lease / 5), at most half the lease', async (t) => {
  t.equal(fenceBudgetMs(10_000, 1000), 8000)
  t.equal(fenceBudgetMs(10_000, 100), 8000)
  t.equal(fenceBudgetMs(2000, 1000), 1000, 'the least lease the configuration allows still leaves half of it')
  t.equal(fenceBudgetMs(60_000, 1000), 48_000)
})

t.test('the fence clock: spent without a successful write, reset by one, growing pauses between retries', async (t) => {
  let now = 0
  const clock = createFenceClock(1000, 0, () => now)
  now = 999
  t.doesNotThrow(() => clock.check())
  clock.failed(new Error('down'))
  t.notOk(clock.mayTry(), 'a pause after a failure')
  now = 1048
  t.notOk(clock.mayTry())
  now = 1049
  t.ok(clock.mayTry(), 'the first pause is 50 ms')
  clock.succeeded()
  t.equal(clock.failures, 0)
  t.equal(clock.remaining(), 1000, 'a success starts the budget again')
  now = 2048
  t.doesNotThrow(() => clock.check())
  clock.failed(new Error('one'))
  clock.failed(new Error('two'))
  t.notOk(clock.mayTry(now + 99), 'the second pause is longer')
  t.ok(clock.mayTry(now + 100))
  now = 2049
  t.throws(() => clock.check(), SelfFenced)
  try { clock.check() } catch (err) {
    t.equal((err as SelfFenced).budgetMs, 1000)
    t.equal(((err as SelfFenced).lastError as Error).message, 'two', 'carries the last failure')
  }
})

t.test('the matrices a job reads are found by the x-matrix-id mark of its params schema', async (t) => {
  t.equal(MATRIX_ID_MARK, MATRIX_ID_KEYWORD, 'the mark the server and the dashboard use')
  t.same(matrixIdsOf(matmul.params, { matrices: [3, 1, 3, 2] }), [3, 1, 2], 'matmul: each id once, in order')
  t.same(matrixIdsOf(matpow.params, { matrix: 7, power: 5 }), [7], 'matpow')
  t.same(matrixIdsOf({ type: 'object', properties: { n: { type: 'integer' } } }, { n: 5 }), [], 'lyapunov-like: none')
  const m: StoredMatrix = { id: 1, name: 'a', rows: 1, cols: 1, data: new Float64Array([2]) }
  const loaded = await preloadMatrices([1, 2], async (id) => { if (id === 1) return m; throw new NotFoundError(`matrix ${id} not found`) })
  const source = preloadedSource([1, 2], loaded)
  t.equal(source.load(1), m)
  t.throws(() => source.load(2), NotFoundError, 'a named matrix that does not exist')
  t.throws(() => source.load(9), /not named by this job's params/, 'an unnamed matrix is refused with the reason')
  await t.rejects(preloadMatrices([1], async () => { throw new Error('connection lost') }), /connection lost/, 'other errors are not swallowed')
})

t.test('a worker that cannot write for the lease less the margin exits with its own code before the lease runs out, having written nothing', async (t) => {
  const { store, path } = tmpDb(t)
  const { row } = store.submit(job(1_000_000), 100)
  const token = 'fence-me'
  store.claimNext(token)
  const { child, lines } = forkWorker(token, path)
  t.teardown(() => { child.kill('SIGKILL') })
  const exited = once(child, 'exit')
  await waitFor(() => { const r = store.get(row.id)!; return r.pid !== null && r.step > 0 }, 20_000, 'the worker computing')

  // Another connection takes the write lock and keeps it past the lease: every write of the worker fails.
  const locker = openDb(path)
  t.teardown(() => { if (locker.inTransaction) locker.prepare('ROLLBACK').run(); locker.close() })
  locker.prepare('BEGIN EXCLUSIVE').run()
  const lockedAt = Date.now()
  const before = locker.prepare('SELECT * FROM jobs WHERE id = ?').get(row.id) as JobRow
  const checkpointBefore = locker.prepare('SELECT step, saved_at FROM checkpoints WHERE job_id = ?').get(row.id)

  const timeout = new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), LEASE_MS + 5000))
  const outcome = await Promise.race([exited, timeout])
  const exitedAt = Date.now()
  t.not(outcome, 'still running', 'the worker exited while the database stayed locked')
  const [code] = outcome as [number | null, NodeJS.Signals | null]
  t.equal(code, EXIT_SELF_FENCED, 'with the self-fencing exit code')
  const lastWrite = before.heartbeat_at as number
  t.ok(exitedAt - lastWrite >= BUDGET_MS - 50, `not before its budget (${exitedAt - lastWrite} ms after its last write; budget ${BUDGET_MS} ms)`)
  // The takeover comes after the lease and then still has to fork and start a worker: 200 ms of slack for this
  // process to hear of the exit on a loaded machine.
  t.ok(exitedAt < lastWrite + LEASE_MS + 200, `before its lease ran out (${exitedAt - lastWrite} ms after its last write; lease ${LEASE_MS} ms; locked for ${exitedAt - lockedAt} ms)`)

  locker.prepare('ROLLBACK').run()
  t.same(written(store.get(row.id)!), written(before), 'nothing written after the lock was taken')
  t.same(locker.prepare('SELECT step, saved_at FROM checkpoints WHERE job_id = ?').get(row.id), checkpointBefore, 'the checkpoint is the one before')
  const fenced = lines.find((l) => l.event === 'self-fenced')
  t.ok(fenced, 'the worker says why it stopped')
  t.equal(fenced?.jobId, row.id)
  t.ok(lines.some((l) => /cannot (write a heartbeat|save a checkpoint); computing on and retrying/.test(String(l.msg))), 'and that its writes were failing')
})

t.test('writes that fail for less than the budget do not stop the worker: a successful one starts the budget again', async (t) => {
  const { store, path } = tmpDb(t)
  const { row } = store.submit(job(1_000_000), 100)
  const token = 'keep-going'
  store.claimNext(token)
  const { child, lines } = forkWorker(token, path)
  t.teardown(() => { child.kill('SIGKILL') })
  let exitCode: number | null | undefined
  child.on('exit', (code) => { exitCode = code })
  await waitFor(() => { const r = store.get(row.id)!; return r.pid !== null && r.step > 0 }, 20_000, 'the worker computing')

  const locker = openDb(path)
  t.teardown(() => { if (locker.inTransaction) locker.prepare('ROLLBACK').run(); locker.close() })
  // Two outages, each shorter than the budget, together longer than it.
  for (let i = 0; i < 2; i++) {
    const beat = store.get(row.id)!.heartbeat_at as number
    locker.prepare('BEGIN EXCLUSIVE').run()
    await new Promise((resolve) => setTimeout(resolve, Math.round(BUDGET_MS * 0.6)))
    locker.prepare('ROLLBACK').run()
    await waitFor(() => store.get(row.id)!.heartbeat_at! > beat, 5000, 'a heartbeat after the outage')
  }
  t.equal(exitCode, undefined, 'still running after two short outages')
  const step = store.get(row.id)!.step
  await waitFor(() => store.get(row.id)!.step > step, 5000, 'progress')
  t.notOk(lines.some((l) => l.event === 'self-fenced'), 'never fenced')
  store.cancel(row.id)
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'obeys a cancel afterwards')
  t.equal(store.get(row.id)!.status, 'canceled')
})
