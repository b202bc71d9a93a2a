/**
 * The worker on PostgreSQL (NONSTOP_DATABASE_URL): it finds its assignment by polling, computes and ends the job
 * through the PostgreSQL store, and when PostgreSQL goes away mid-run it stops computing and exits with
 * EXIT_SELF_FENCED before its lease runs out. Real forks of the built worker, a throwaway PostgreSQL cluster.
 *
 * Skipped, saying so, while the PostgreSQL store's worker side (begin) is not written yet (docs/postgres.md).
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { workerExecArgv } from '../../src/jobs/scheduler.js'
import { EXIT_SELF_FENCED, fenceBudgetMs } from '../../src/jobs/self-fence.js'
import { type NewJob, WORKER_ENV } from '../../src/jobs/types.js'
import { createPostgresJobStore, openPostgres } from '../../src/store/postgres.js'
import { migratePostgres } from '../../src/store/postgres-migrate.js'
import { waitFor } from '../fixtures/helpers.js'
import { startPostgres } from '../fixtures/postgres.js'

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url))
const BUNDLE = `${DIST}jobs/worker-bundle.cjs`
const ENTRY = existsSync(BUNDLE) ? BUNDLE : `${DIST}jobs/worker.js`
const HEARTBEAT_MS = 100
const LEASE_MS = 3000

const job = (steps: number): NewJob =>
  ({ type: 'lyapunov', name: null, params: { seed: 3, n: 60, steps }, steps, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null })

const cluster = await startPostgres(t)
const url = await cluster.createDatabase()
const pool = openPostgres(url, { max: 4 })
t.teardown(() => pool.end().catch(() => {}))
await migratePostgres(pool)
const store = createPostgresJobStore(pool)

const beginMissing = await store.begin({ id: 0, lease: 0, worker: 'probe' }, { step: 0, progress: 0, pid: 1 })
  .then(() => false, (err: Error) => /not yet/.test(err.message))
const skip = beginMissing && 'the PostgreSQL store has no begin() yet'

function forkWorker (token: string) {
  return fork(ENTRY, [token], {
    execArgv: workerExecArgv([]),
    env: {
      ...process.env,
      [WORKER_ENV.databaseUrl]: url,
      [WORKER_ENV.dbPath]: '',
      [WORKER_ENV.heartbeatMs]: String(HEARTBEAT_MS),
      [WORKER_ENV.checkpointMs]: '300',
      [WORKER_ENV.leaseMs]: String(LEASE_MS),
      LOG_LEVEL: 'silent'
    },
    stdio: 'ignore'
  })
}

t.test('a spare worker finds the job claimed for it after it started, and ends it', { skip }, async (t) => {
  const token = 'pg-spare'
  const worker = forkWorker(token)
  t.teardown(() => { worker.kill('SIGKILL') })
  const exited = once(worker, 'exit')
  await new Promise((resolve) => setTimeout(resolve, 500))
  const { row } = await store.submit(job(5), 100)
  t.ok(await store.claimNext(token), 'claimed for the waiting worker')
  const [code] = await exited
  t.equal(code, 0, 'exits 0')
  const done = await store.get(row.id)
  t.equal(done?.status, 'done', `done (${done?.error ?? ''})`)
  t.match(JSON.parse(done?.result ?? '{}'), { lyapunov: Number })
})

// Last: it stops the cluster.
t.test('PostgreSQL stopped mid-run: the worker stops computing and exits with its own code before its lease runs out', { skip }, async (t) => {
  const { row } = await store.submit(job(1_000_000), 100)
  const token = 'pg-fence'
  await store.claimNext(token)
  const worker = forkWorker(token)
  t.teardown(() => { worker.kill('SIGKILL') })
  const exited = once(worker, 'exit')
  const running = await waitFor(async () => { const r = await store.get(row.id); return r && r.pid !== null && r.step > 0 && r }, 20_000, 'the worker computing')
  t.equal(running.pid, worker.pid)
  await pool.end()
  cluster.stop() // synchronous: PostgreSQL is gone when it returns, and the worker's last write was before that
  const stoppedAt = Date.now()
  const outcome = await Promise.race([exited, new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), LEASE_MS + 5000))])
  const after = Date.now() - stoppedAt
  t.not(outcome, 'still running', 'the worker exited')
  t.equal((outcome as [number | null])[0], EXIT_SELF_FENCED, 'with the self-fencing exit code')
  t.ok(after < LEASE_MS, `within the lease of its last possible write (${after} ms after PostgreSQL was gone; budget ${fenceBudgetMs(LEASE_MS, HEARTBEAT_MS)} ms)`)
})
