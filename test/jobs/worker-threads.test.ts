import { readFileSync } from 'node:fs'
import type { Test } from 'tap'
import t from 'tap'
import type { Config } from '../../src/config.js'
import { coreCount } from '../../src/jobs/cores.js'
import { LyapunovRun } from '../../src/jobs/lyapunov.js'
import { createScheduler } from '../../src/jobs/scheduler.js'
import { createLogger } from '../../src/log.js'
import { pidRunning, testConfig, tmpDb, waitFor } from '../fixtures/helpers.js'

/** A real scheduler forking real workers (dist/) on a temp database file; stopped at teardown. */
function setup (t: Test, env: Record<string, string> = {}) {
  const { store, path, jobs } = tmpDb(t)
  const config: Config = testConfig({ DB_PATH: path, MAX_CONCURRENCY: '2', HEARTBEAT_MS: '100', CHECKPOINT_MS: '200', LEASE_MS: '5000', STOP_GRACE_MS: '3000', ...env })
  const scheduler = createScheduler({ store: jobs, config, log: createLogger({ logLevel: 'silent' }) })
  scheduler.start()
  t.teardown(() => scheduler.stop())
  const submit = (params: { n: number, steps: number, seed: number }) => {
    const { row } = store.submit({ type: 'lyapunov', name: null, params, steps: params.steps, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null }, 1000)
    scheduler.wake()
    return row.id
  }
  return { store, scheduler, submit }
}

/** Threads of a process, from /proc (node's own plus one per worker_thread). */
const threadsOf = (pid: number): number => Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)

t.test('a lone job uses every core: its result reports them, with the bits of a one-thread run', async (t) => {
  const cores = coreCount()
  const { store, submit } = setup(t)
  const params = { n: 130, steps: 600, seed: 8 } // long enough for the pool thread to start (it takes no group before)
  const id = submit(params)
  const done = await waitFor(() => { const r = store.get(id); return r?.status === 'done' && r }, 200_000, 'done')
  const result = JSON.parse(done.result!)
  t.equal(result.threads, Math.min(cores, 5), `threads used = cores (${cores}), at most the 5 column groups of n = 130`)
  const local = new LyapunovRun(params, undefined, { threads: () => 1 })
  while (!local.finished) local.advance()
  t.ok(Object.is(result.lyapunov, local.result().lyapunov), 'lyapunov bit-identical to a one-thread in-process run')
  t.ok(Object.is(result.trace, local.result().trace), 'trace bit-identical to a one-thread in-process run')
})

t.test('cancel and graceful stop end a worker computing on several threads, threads included', async (t) => {
  process.env.NONSTOP_THREADS = '3'
  t.teardown(() => { delete process.env.NONSTOP_THREADS })
  const { store, submit, scheduler } = setup(t)
  const canceled = submit({ n: 300, steps: 5000, seed: 3 })
  const released = submit({ n: 300, steps: 5000, seed: 4 })
  const pids: number[] = []
  for (const id of [canceled, released]) {
    pids.push(await waitFor(() => { const r = store.get(id); return r?.step && r.step > 0 && r.pid }, 100_000, `job ${id} to make progress`))
  }
  for (const pid of pids) t.comment(`worker ${pid} runs ${threadsOf(pid)} OS threads`)
  store.cancel(canceled)
  scheduler.wake()
  await waitFor(() => store.get(canceled)?.status === 'canceled', 10_000, 'canceled')
  await waitFor(() => !pidRunning(pids[0]), 5000, 'the canceled worker to be gone')
  t.notOk(pidRunning(pids[0]), 'the canceled worker and its threads are gone')
  await scheduler.stop()
  t.equal(store.get(released)?.status, 'pending', 'graceful stop gave the other job back')
  t.notOk(pidRunning(pids[1]), 'the released worker and its threads are gone')
})
