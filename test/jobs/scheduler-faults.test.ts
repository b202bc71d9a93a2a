/**
 * The scheduler where things go wrong: pids that now belong to other processes, workers that are lost but still
 * there, workers that die at boot or find the database busy, a database error while a worker exits. Real forks,
 * real `sleep` processes, a real SQLite file.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { createScheduler, WORKER_ENTRY, workerExecArgv } from '../../src/jobs/scheduler.js'
import type { JobStore } from '../../src/jobs/store.js'
import type { AsyncJobStore } from '../../src/store/job-store.js'
import { type NewJob, WORKER_ENV } from '../../src/jobs/types.js'
import { createLogger } from '../../src/log.js'
import { hasProc, processStartTime } from '../../src/process-identity.js'
import { pidRunning, testConfig, tmpDb, waitFor } from '../fixtures/helpers.js'

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname
const noProc = !hasProc() && 'needs Linux /proc'

const job = (params: { n: number, steps: number, seed?: number }, over: Partial<NewJob> = {}): NewJob =>
  ({ type: 'lyapunov', name: null, params: { seed: 1, ...params }, steps: params.steps, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null, ...over })

function scheduler (t: Test, store: AsyncJobStore, path: string, env: Record<string, string> = {}, workerEntry?: string) {
  const logFile = join(dirname(path), 'scheduler.log') // Beside the database: a second t.testdir() would wipe it.
  const config = testConfig({ DB_PATH: path, MAX_CONCURRENCY: '2', HEARTBEAT_MS: '100', CHECKPOINT_MS: '200', LEASE_MS: '1000', STOP_GRACE_MS: '500', SHUTDOWN_GRACE_MS: '2000', ...env })
  const s = createScheduler({ store, config, log: createLogger({ logLevel: 'info', logFile }), workerEntry })
  t.teardown(() => s.stop())
  const logs = (): Array<Record<string, unknown>> => {
    try { return readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) } catch { return [] }
  }
  return { scheduler: s, logs }
}

/** A real process that is not a worker: what a dead worker's pid may belong to after a restart. */
async function stranger (t: Test): Promise<ChildProcess & { pid: number }> {
  const proc = spawn('sleep', ['60'], { stdio: 'ignore' })
  t.teardown(() => { proc.kill('SIGKILL') })
  await once(proc, 'spawn')
  return proc as ChildProcess & { pid: number }
}

/** A running row that says its worker is `pid`, recorded with another start time (the worker it once was). */
function runningAs (store: JobStore, pid: number, over: Partial<NewJob> = {}, token = `gone-${pid}-${Math.random()}`): number {
  const { row } = store.submit(job({ n: 20, steps: 50 }, over), 100)
  const claim = store.claimNext(token)
  if (claim?.id !== row.id) throw new Error('claimed another job')
  store.beat(claim, { step: 0, progress: 0, pid, pidStart: (processStartTime(pid) as number) - 100 })
  return row.id
}

t.test('a pid that now belongs to another process is never signalled, and its jobs do not wait', { skip: noProc }, async (t) => {
  const { store, path, jobs } = tmpDb(t)
  const sleeper = await stranger(t)
  const lost = runningAs(store, sleeper.pid)
  const canceled = runningAs(store, sleeper.pid)
  store.cancel(canceled)
  const timed = runningAs(store, sleeper.pid, { timeoutMs: 1 })
  // Same start time as the process really has, but no worker token in its command line: not our worker either.
  const { row } = store.submit(job({ n: 20, steps: 50 }), 100)
  const claim = store.claimNext('token-not-in-its-argv')!
  store.beat(claim, { step: 0, progress: 0, pid: sleeper.pid, pidStart: processStartTime(sleeper.pid) })
  store.cancel(row.id)

  const started = Date.now()
  const { scheduler: s } = scheduler(t, jobs, path, { LEASE_MS: '5000', STOP_GRACE_MS: '500' })
  s.start()
  await waitFor(() => store.get(canceled)?.status === 'canceled', 2000, 'the cancel to be carried out')
  t.ok(Date.now() - started < 2000, `cancel done in ${Date.now() - started} ms, without waiting for a lease`)
  await waitFor(() => store.get(timed)?.status === 'failed', 2000, 'the timeout')
  t.equal(store.get(timed)?.error, 'timeout', 'the time limit is applied')
  t.equal(store.get(row.id)?.status, 'canceled', 'a matching start time without the worker token is not trusted either')
  const resumed = await waitFor(() => { const r = store.get(lost); return r && r.attempts === 2 && r }, 5000, 'the lost job to be resumed')
  t.match(resumed.error, /now belongs to another process/, `resumed at once: ${resumed.error}`)
  await waitFor(() => store.get(lost)?.status === 'done', 30_000, 'the resumed job to finish')
  // Well past STOP_GRACE_MS: the old code killed the stranger here.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  t.ok(pidRunning(sleeper.pid), `the process now owning pid ${sleeper.pid} is alive`)
  t.equal(s.stats.killed, 0, 'nothing was killed')
})

t.test('a graceful stop never signals a foreign pid, and does not wait for it', { skip: noProc }, async (t) => {
  const { store, path, jobs } = tmpDb(t)
  const sleeper = await stranger(t)
  const id = runningAs(store, sleeper.pid)
  const { scheduler: s } = scheduler(t, jobs, path, { LEASE_MS: '60000', SHUTDOWN_GRACE_MS: '3000', MAX_CONCURRENCY: '1' })
  // Not started: the stop meets the row as a server stopping right after its start would.
  const started = Date.now()
  await s.stop()
  t.ok(Date.now() - started < 1500, `stopped in ${Date.now() - started} ms, not after SHUTDOWN_GRACE_MS`)
  t.equal(store.get(id)?.status, 'pending', 'the job is released for the next start')
  t.equal(store.get(id)?.attempts, 0, 'without using an attempt')
  t.ok(pidRunning(sleeper.pid), 'the process now owning the pid is alive')
})

t.test('a lost worker that is still there is killed: our own child, and an adopted one once its identity is verified', { skip: noProc }, async (t) => {
  const { store, path, jobs } = tmpDb(t)
  // An adopted worker: forked here by the test, not by the scheduler, holding a claim written for its token.
  const token = 'adopted-worker-token'
  const { row: adoptedJob } = store.submit(job({ n: 60, steps: 100_000 }), 100)
  store.claimNext(token)
  const adopted = fork(WORKER_ENTRY, [token], {
    execArgv: workerExecArgv(),
    env: { ...process.env, [WORKER_ENV.dbPath]: path, [WORKER_ENV.heartbeatMs]: '100', [WORKER_ENV.checkpointMs]: '200', LOG_LEVEL: 'silent' },
    stdio: 'ignore'
  })
  t.teardown(() => { adopted.kill('SIGKILL') })
  const adoptedExit = once(adopted, 'exit')
  await waitFor(() => (store.get(adoptedJob.id)?.step ?? 0) > 0, 30_000, 'the adopted worker to compute')

  const { scheduler: s, logs: dbg } = scheduler(t, jobs, path, { MAX_CONCURRENCY: '2', LEASE_MS: '1000' })
  setTimeout(() => { console.error(JSON.stringify(dbg().map((l) => [l.msg, l.err, l.jobId, l.reason]))) }, 10000)
  s.start()
  const { row: ownJob } = store.submit(job({ n: 60, steps: 100_000, seed: 2 }), 100)
  s.wake()
  const ownPid = await waitFor(() => { const r = store.get(ownJob.id); return (r?.step ?? 0) > 0 && r?.pid }, 30_000, 'our own worker to compute')
  process.kill(ownPid, 'SIGSTOP')
  adopted.kill('SIGSTOP')
  t.teardown(() => { try { process.kill(ownPid, 'SIGKILL') } catch {} })

  await waitFor(() => (store.get(ownJob.id)?.attempts ?? 0) >= 2 && (store.get(adoptedJob.id)?.attempts ?? 0) >= 2, 20_000, 'both jobs taken over')
  await waitFor(() => !pidRunning(ownPid), 5000, 'the frozen child to be killed')
  t.pass(`frozen child ${ownPid} killed once its job was taken over`)
  const [, signal] = await Promise.race([adoptedExit, new Promise<[null, string]>((resolve) => setTimeout(() => resolve([null, 'still there']), 5000))])
  t.equal(signal, 'SIGKILL', 'the frozen adopted worker was killed too')
  t.ok(s.stats.killed >= 2, `${s.stats.killed} kills counted`)
})

t.test('workers that die at boot are forked again with a growing pause, and /readyz says so', async (t) => {
  const { path, db, jobs } = tmpDb(t)
  const { scheduler: s, logs } = scheduler(t, jobs, path, { WARM_SPARE: 'true' }, join(FIXTURES, 'exit-at-boot-worker.mjs'))
  const forkTimes: number[] = []
  const watch = setInterval(() => { while (forkTimes.length < s.stats.forks) forkTimes.push(Date.now()) }, 10)
  t.teardown(() => clearInterval(watch))
  s.start()
  const failures = () => logs().filter((l) => l.msg === 'worker died at boot; forking again after a pause')
  await waitFor(() => failures().length >= 3 && forkTimes.length >= 4, 60_000, 'three failures and the fork after them')
  const seen = failures().slice(0, 3)
  t.same(seen.map((l) => l.retryInMs), [250, 500, 1000], 'the pause doubles with each failure in a row')
  for (const [i, failure] of seen.entries()) {
    const at = Date.parse(failure.time as string)
    const next = forkTimes.find((f) => f > at)
    t.ok(next !== undefined && next - at >= (failure.retryInMs as number) - 20, `failure ${i + 1}: next fork ${next === undefined ? 'none' : `${next - at} ms`} later, after its ${failure.retryInMs} ms pause`)
  }
  const health = s.health()
  t.equal(health.ok, false, 'not healthy')
  t.match(health.reason, /workers die at boot: \d+ in a row \(last: idle worker exited with code 1\); next try in \d+ s/, health.reason)

  const { checkDb } = await import('../../src/http/ops.js')
  const app = await buildApp({ config: testConfig({ DB_PATH: path }), store: jobs, scheduler: s, dbReady: () => checkDb(db) })
  t.teardown(() => app.close())
  const ready = await app.inject({ url: '/readyz' })
  t.equal(ready.statusCode, 503, '/readyz: 503')
  t.match(ready.json(), { status: 'unavailable', reason: /workers die at boot/ }, 'with the reason')
})

t.test('after workers died at boot, a spare that opens the database counts as booted and /readyz recovers', { skip: noProc }, async (t) => {
  const { path, jobs } = tmpDb(t)
  const { scheduler: s, logs } = scheduler(t, jobs, path, { WARM_SPARE: 'true' }, join(FIXTURES, 'boot-fails-twice-worker.mjs'))
  s.start()
  await waitFor(() => logs().filter((l) => l.msg === 'worker died at boot; forking again after a pause').length >= 2, 30_000, 'two failures at boot')
  t.equal(s.health().ok, false, 'two failures in a row: not ready')
  const back = await waitFor(() => logs().find((l) => l.msg === 'workers boot again'), 30_000, 'a spare to boot')
  t.equal(back.after, 2, 'the spare that opened the database ended a run of 2 failures')
  t.equal(s.health().ok, true, 'ready again')
  t.equal(logs().filter((l) => l.msg === 'worker died at boot; forking again after a pause').length, 2, 'no failure counted after it')
})

t.test('a worker that leaves because the database is busy is not charged an attempt', async (t) => {
  const { store, path, jobs } = tmpDb(t)
  const { scheduler: s, logs } = scheduler(t, jobs, path, { MAX_ATTEMPTS: '1', WARM_SPARE: 'false', MAX_CONCURRENCY: '1', LEASE_MS: '20000' }, join(FIXTURES, 'busy-exit-worker.mjs'))
  const { row } = store.submit(job({ n: 20, steps: 50 }), 100)
  s.start()
  await waitFor(() => logs().filter((l) => l.reason === 'database busy').length >= 2, 20_000, 'two busy exits')
  await s.stop()
  const after = store.get(row.id)!
  t.not(after.status, 'failed', `with MAX_ATTEMPTS=1 the job is still ${after.status}, not failed`)
  t.equal(after.attempts, 0, 'no attempt charged')
  t.equal(after.error, 'worker found the database locked for too long', 'the reason is kept')
})

t.test('a database error while a worker exits is logged, not a crash; the next pass settles the job', async (t) => {
  const { store, path, jobs } = tmpDb(t)
  const { scheduler: s, logs } = scheduler(t, jobs, path, { LEASE_MS: '10000' })
  s.start()
  const { row } = store.submit(job({ n: 60, steps: 100_000 }), 100)
  s.wake()
  const pid = await waitFor(() => { const r = store.get(row.id); return (r?.step ?? 0) > 0 && r?.pid }, 30_000, 'the worker to compute')
  const attempts = store.get(row.id)!.attempts
  const get = jobs.get
  jobs.get = async () => { throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }) }
  process.kill(pid, 'SIGKILL')
  await waitFor(() => logs().some((l) => l.msg === 'could not settle the exit of a worker; the next pass will'), 5000, 'the error to be logged')
  jobs.get = get
  const resumed = await waitFor(() => { const r = store.get(row.id); return r && r.attempts > attempts && r }, 10_000, 'the job to be resumed')
  // The exit whose settlement failed is kept and settled by the next pass, with what really happened to the worker.
  t.match(resumed.error, /worker killed by SIGKILL/, `the next pass resumed it at once: ${resumed.error}`)
})

t.test('a stop request the worker reads with its first heartbeat is obeyed', async (t) => {
  const { store, path } = tmpDb(t)
  const token = 'late-worker'
  const { row } = store.submit(job({ n: 30, steps: 300 }), 100)
  store.claimNext(token)
  store.cancel(row.id) // Canceled while its worker was still booting.
  const worker = fork(WORKER_ENTRY, [token], {
    execArgv: workerExecArgv(),
    // No heartbeat after the first one for a minute: only the first can carry the request.
    env: { ...process.env, [WORKER_ENV.dbPath]: path, [WORKER_ENV.heartbeatMs]: '60000', [WORKER_ENV.checkpointMs]: '60000', LOG_LEVEL: 'silent' },
    stdio: 'ignore'
  })
  t.teardown(() => { worker.kill('SIGKILL') })
  const [code] = await once(worker, 'exit')
  const after = store.get(row.id)!
  t.equal(after.status, 'canceled', 'canceled, not computed to the end')
  t.equal(after.step, 0, 'nothing computed')
  t.equal(code, 0, 'the worker exits 0')
})
