/**
 * The bundled worker (dist/jobs/worker-bundle.cjs, built by `npm run build`, which `npm test` runs first): the
 * scheduler forks it when it is fresh, it computes the same bits as the plain worker module, the server still
 * recognizes it by the token in its command line, and it stops on a cancel.
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync, utimesSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { workerExecArgv } from '../../src/jobs/scheduler.js'
import { type NewJob, WORKER_ENV } from '../../src/jobs/types.js'
import { checkProcess, hasProc } from '../../src/process-identity.js'
import { tmpDb, waitFor } from '../fixtures/helpers.js'

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url))
const BUNDLE = `${DIST}jobs/worker-bundle.cjs`
const PLAIN = `${DIST}jobs/worker.js`
const missing = !existsSync(BUNDLE) && 'needs npm run build (with esbuild) first'

const job = (params: { n: number, steps: number, seed?: number }): NewJob =>
  ({ type: 'lyapunov', name: null, params: { seed: 3, ...params }, steps: params.steps, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null })

/** Forks `entry` as the scheduler does, with plain Node flags (no test-runner loader: both entries are .js). */
function forkWorker (entry: string, token: string, path: string) {
  return fork(entry, [token], {
    execArgv: workerExecArgv([]),
    env: { ...process.env, [WORKER_ENV.dbPath]: path, [WORKER_ENV.heartbeatMs]: '100', [WORKER_ENV.checkpointMs]: '200', LOG_LEVEL: 'silent' },
    stdio: 'ignore'
  })
}

t.test('the bundle and the plain module give the same bits', { skip: missing }, async (t) => {
  const { store, path } = tmpDb(t)
  const results: Record<string, unknown> = {}
  for (const entry of [BUNDLE, PLAIN]) {
    const { row } = store.submit(job({ n: 70, steps: 3 }), 100)
    const token = `tok-${entry.endsWith('.cjs') ? 'bundle' : 'plain'}`
    store.claimNext(token)
    const worker = forkWorker(entry, token, path)
    t.teardown(() => { worker.kill('SIGKILL') })
    const [code] = await once(worker, 'exit')
    t.equal(code, 0, `${entry} exits 0`)
    const done = store.get(row.id)!
    t.equal(done.status, 'done', `${entry}: job done (${done.error ?? ''})`)
    const result = JSON.parse(done.result ?? '{}') as { lyapunov?: number }
    results[entry] = result.lyapunov
  }
  t.type(results[BUNDLE], 'number')
  t.equal(results[BUNDLE], results[PLAIN], 'the same exponent, bit for bit')
})

t.test('a bundled worker is recognized by its token and obeys a cancel', { skip: missing || (!hasProc() && 'needs Linux /proc') }, async (t) => {
  const { store, path } = tmpDb(t)
  const { row } = store.submit(job({ n: 60, steps: 100_000 }), 100)
  const token = 'bundle-identity'
  store.claimNext(token)
  const worker = forkWorker(BUNDLE, token, path)
  t.teardown(() => { worker.kill('SIGKILL') })
  t.ok(await waitFor(() => store.get(row.id)!.pid !== null, 20_000), 'first heartbeat with its pid')
  const running = store.get(row.id)!
  t.equal(running.pid, worker.pid, 'the pid is the forked process')
  t.equal(checkProcess(running.pid!, { start: running.pid_start, token }), 'running', 'identified by start time and token')
  t.equal(checkProcess(running.pid!, { start: running.pid_start, token: 'someone-else' }), 'foreign', 'another token is another process')
  store.cancel(row.id)
  const [code] = await once(worker, 'exit')
  t.equal(code, 0, 'exits 0 after the cancel')
  t.equal(store.get(row.id)!.status, 'canceled')
})

t.test('the scheduler forks the bundle only while it is not older than the compiled modules', { skip: missing }, async (t) => {
  const { chooseWorkerEntry } = await import(`${DIST}jobs/scheduler.js`) as typeof import('../../src/jobs/scheduler.js')
  t.same(chooseWorkerEntry(), { entry: BUNDLE, bundled: true }, 'fresh bundle: forked')
  const now = Date.now() / 1000
  utimesSync(BUNDLE, now - 3600, now - 3600)
  t.teardown(() => utimesSync(BUNDLE, now, now))
  const stale = chooseWorkerEntry()
  t.equal(stale.entry, PLAIN, 'stale bundle: the plain module')
  t.match(stale.why, /older than the compiled modules/)
})

t.test('workers forked from dist/ share a compile cache: filled by one, used by the next with the same bits', { skip: missing }, async (t) => {
  const { workerCompileCacheEnv, WORKER_COMPILE_CACHE } = await import(`${DIST}jobs/scheduler.js`) as typeof import('../../src/jobs/scheduler.js')
  t.same(workerCompileCacheEnv({}), { NODE_COMPILE_CACHE: WORKER_COMPILE_CACHE }, 'by default, beside the bundle')
  t.equal(WORKER_COMPILE_CACHE, `${DIST}jobs/.compile-cache`)
  t.same(workerCompileCacheEnv({ NODE_COMPILE_CACHE: '/operators/own' }), { NODE_COMPILE_CACHE: '/operators/own' }, "an operator's own cache is kept")

  const cache = t.testdir()
  const { store, path } = tmpDb(t)
  const results: unknown[] = []
  for (const run of [1, 2]) {
    const { row } = store.submit(job({ n: 40, steps: 2 }), 100)
    const token = `tok-cache-${run}`
    store.claimNext(token)
    const worker = fork(BUNDLE, [token], {
      execArgv: workerExecArgv([]),
      env: { ...process.env, ...workerCompileCacheEnv({ NODE_COMPILE_CACHE: cache }), NODE_DISABLE_COMPILE_CACHE: '', [WORKER_ENV.dbPath]: path, LOG_LEVEL: 'silent' },
      stdio: 'ignore'
    })
    t.teardown(() => { worker.kill('SIGKILL') })
    const [code] = await once(worker, 'exit')
    t.equal(code, 0, `run ${run} exits 0`)
    const done = store.get(row.id)!
    t.equal(done.status, 'done', `run ${run}: done (${done.error ?? ''})`)
    results.push((JSON.parse(done.result ?? '{}') as { lyapunov?: number }).lyapunov)
    // Node ≥ 22.1 writes the cache at exit; Node 20 has no compile cache and ignores the variable.
    if (typeof (await import('node:module')).enableCompileCache === 'function') {
      const entries = readdirSync(cache, { recursive: true }).length
      t.ok(entries > 0, `run ${run}: the cache holds compiled code (${entries} entries)`)
    }
  }
  t.type(results[0], 'number')
  t.equal(results[1], results[0], 'a worker started from the cache computes the same bits')
})
