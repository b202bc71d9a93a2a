import { readFileSync } from 'node:fs'
import type { Test } from 'tap'
import t from 'tap'
import type { Config } from '../../src/config.js'
import { LyapunovRun } from '../../src/jobs/lyapunov.js'
import { createScheduler } from '../../src/jobs/scheduler.js'
import type { NewJob } from '../../src/jobs/types.js'
import { createLogger } from '../../src/log.js'
import { pidRunning, testConfig, tmpDb, waitFor } from '../fixtures/helpers.js'

/** A real scheduler forking real workers on a temp database file; stopped at teardown. */
function setup (t: Test, env: Record<string, string> = {}) {
  const { store, db, path, jobs } = tmpDb(t)
  const config: Config = testConfig({ DB_PATH: path, MAX_CONCURRENCY: '2', HEARTBEAT_MS: '100', CHECKPOINT_MS: '200', LEASE_MS: '5000', STOP_GRACE_MS: '3000', ...env })
  const scheduler = createScheduler({ store: jobs, config, log: createLogger({ logLevel: 'silent' }) })
  scheduler.start()
  t.teardown(() => scheduler.stop())
  const submit = (params: { n: number, steps: number, seed: number }, over: Partial<NewJob> = {}) => {
    const { row } = store.submit({ type: 'lyapunov', name: null, params, steps: params.steps, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null, ...over }, 1000)
    scheduler.wake()
    return row.id
  }
  return { store, db, scheduler, submit, config }
}

function reference (params: { n: number, steps: number, seed: number }) {
  const run = new LyapunovRun(params)
  while (!run.finished) run.advance()
  return run.result()
}

t.test('a real job runs to done in a forked worker and matches theory and an in-process run', async (t) => {
  const { store, submit } = setup(t)
  const params = { n: 64, steps: 300, seed: 11 }
  const id = submit(params)
  const pid = await waitFor(() => store.get(id)?.pid, 30_000, 'the worker to report its pid')
  t.not(pid, process.pid, 'computed in another process')
  const done = await waitFor(() => { const r = store.get(id); return r?.status === 'done' && r }, 60_000, 'done')
  const result = JSON.parse(done.result!)
  t.equal(done.progress, 100, 'progress 100')
  t.equal(done.step, 300, 'all steps')
  t.equal(done.attempts, 1, 'one attempt')
  t.equal(done.pid, null, 'no worker pid once finished')
  t.ok(Math.abs(result.lyapunov - result.theory) / result.theory < 0.01, `lyapunov ${result.lyapunov} within 1 % of ${result.theory}`)
  t.ok(result.gflops > 0 && result.elapsedMs >= 0, 'timing reported')
  const local = reference(params)
  t.ok(Object.is(result.lyapunov, local.lyapunov), 'lyapunov bit-identical to an in-process run')
  t.ok(Object.is(result.trace, local.trace), 'trace bit-identical to an in-process run')
  t.equal(store.loadCheckpoint(id), undefined, 'no checkpoint left behind')
  await waitFor(() => !pidRunning(pid), 10_000, 'the worker to exit')
})

t.test('at most MAX_CONCURRENCY jobs run at once, highest priority first', async (t) => {
  const { store, submit, scheduler } = setup(t, { MAX_CONCURRENCY: '1' })
  const slow = submit({ n: 120, steps: 400, seed: 1 })
  await waitFor(() => store.get(slow)?.status === 'running', 30_000, 'the first job to run')
  const low = submit({ n: 2, steps: 1, seed: 1 })
  const high = submit({ n: 2, steps: 1, seed: 1 }, { priority: 10 })
  await new Promise((resolve) => setTimeout(resolve, 600))
  t.equal(store.counts().running, 1, 'only one runs')
  t.equal(store.get(high)?.status, 'pending', 'the others wait')
  store.cancel(slow)
  scheduler.wake()
  await waitFor(() => store.get(high)?.status === 'done', 30_000, 'the high-priority job')
  const highRow = store.get(high)!
  const lowRow = await waitFor(() => { const r = store.get(low); return r?.status === 'done' && r }, 30_000, 'the low-priority job')
  t.ok(highRow.started_at! <= lowRow.started_at!, 'priority 10 started before priority 0 though submitted later')
})

t.test('cancel of a running job stops its worker', async (t) => {
  const { store, submit, scheduler } = setup(t)
  const id = submit({ n: 150, steps: 5000, seed: 3 })
  const pid = await waitFor(() => { const r = store.get(id); return r?.step && r.step > 0 && r.pid }, 30_000, 'the job to make progress')
  store.cancel(id)
  scheduler.wake()
  const row = await waitFor(() => { const r = store.get(id); return r?.status === 'canceled' && r }, 10_000, 'canceled')
  t.ok(row.step < 5000, `stopped early, at step ${row.step}`)
  await waitFor(() => !pidRunning(pid), 5000, 'the worker process to be gone')
  t.notOk(pidRunning(pid), `worker ${pid} is gone`)
  t.equal(store.loadCheckpoint(id), undefined, 'checkpoint deleted with the canceled job')
})

t.test('a killed worker does not leave its job running: it resumes from its checkpoint with the same answer', async (t) => {
  const { store, submit } = setup(t)
  const params = { n: 80, steps: 1500, seed: 21 }
  const id = submit(params)
  // A checkpoint past step 0, so the resume has real work behind it (a checkpoint can be taken inside step 0).
  const pid = await waitFor(() => { const r = store.get(id); return (store.loadCheckpoint(id)?.step ?? 0) > 0 && r?.pid }, 30_000, 'a checkpoint past step 0')
  const saved = store.loadCheckpoint(id)!.step
  process.kill(pid, 'SIGKILL')
  const resumed = await waitFor(() => { const r = store.get(id); return r && r.attempts === 2 && r.pid && r.pid !== pid && r }, 30_000, 'a second attempt')
  t.equal(resumed.error, 'worker killed by SIGKILL', 'the loss is recorded')
  const done = await waitFor(() => { const r = store.get(id); return r?.status === 'done' && r }, 90_000, 'done')
  const result = JSON.parse(done.result!)
  const local = reference(params)
  t.ok(saved > 0, `a checkpoint at step ${saved} existed when it was killed`)
  t.ok(Object.is(result.lyapunov, local.lyapunov), 'lyapunov bit-identical to an uninterrupted run')
  t.ok(Object.is(result.trace, local.trace), 'trace bit-identical to an uninterrupted run')
  t.equal(done.attempts, 2, 'two attempts')
})

t.test('a job whose worker cannot start it fails with the reason instead of looping', async (t) => {
  const { store, submit, db } = setup(t, { MAX_CONCURRENCY: '1' })
  const blocker = submit({ n: 100, steps: 3000, seed: 1 })
  await waitFor(() => store.get(blocker)?.status === 'running', 30_000, 'blocker running')
  const id = submit({ n: 10, steps: 5, seed: 1 })
  // A checkpoint that does not fit the job's parameters, as a corrupted file would give.
  db.prepare('INSERT INTO checkpoints (job_id, lease, step, state, saved_at) VALUES (?, 0, 2, ?, 0)').run(id, Buffer.alloc(16))
  store.cancel(blocker)
  const row = await waitFor(() => { const r = store.get(id); return r?.status === 'failed' && r }, 30_000, 'failed')
  t.match(row.error, /cannot restore the checkpoint of step 2: checkpoint holds 16 bytes/, 'the reason is stored')
})

t.test('graceful stop releases running jobs and leaves no child process', async (t) => {
  const { store, submit, scheduler } = setup(t)
  const a = submit({ n: 100, steps: 5000, seed: 1 })
  const b = submit({ n: 100, steps: 5000, seed: 2 })
  await waitFor(() => store.get(a)?.step && store.get(b)?.step, 30_000, 'both running')
  const pids = scheduler.childPids()
  t.ok(pids.length >= 2, `${pids.length} workers (2 running + spare)`)
  const started = Date.now()
  await scheduler.stop()
  t.ok(Date.now() - started < 5000, `stopped in ${Date.now() - started} ms`)
  for (const id of [a, b]) {
    const row = store.get(id)!
    t.equal(row.status, 'pending', `job ${id} back to pending`)
    t.equal(row.attempts, 0, `job ${id}: the release did not use an attempt`)
    t.ok(store.loadCheckpoint(id), `job ${id} has a checkpoint to resume from`)
  }
  for (const pid of pids) t.notOk(pidRunning(pid), `worker ${pid} gone`)
})

t.test('the worker never imports the HTTP layer', async (t) => {
  const seen = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    const source = readFileSync(file, 'utf8')
    for (const [, spec] of source.matchAll(/^import[^'"]*['"]([^'"]+)['"]/gm)) {
      t.notMatch(spec, /fastify|\/http\//, `${file.replace(/.*src\//, 'src/')} imports ${spec}`)
      if (spec.startsWith('.')) visit(new URL(spec.replace(/\.js$/, '.ts'), `file://${file}`).pathname)
    }
  }
  visit(new URL('../../src/jobs/worker.ts', import.meta.url).pathname)
  t.ok(seen.size > 3, `${seen.size} modules checked`)
})
