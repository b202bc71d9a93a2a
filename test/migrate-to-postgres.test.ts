/**
 * `npm run migrate-to-postgres` on a real SQLite file and a real PostgreSQL: ids, bytes and histories kept, running
 * jobs back to pending with their checkpoints, ids never reused afterwards, and a refusal (changing nothing) when
 * the target is not empty or a server still uses the file.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import { acquireServerLock } from '../src/server-lock.js'
import { LyapunovRun } from '../src/jobs/lyapunov.js'
import { createMatrixStore } from '../src/matrices/store.js'
import { api, ROOT, startServer, tmpDb, waitFor } from './fixtures/helpers.js'
import { startPostgres } from './fixtures/postgres.js'

const run = (env: Record<string, string>) => spawnSync(process.execPath, [join(ROOT, 'dist/migrate-to-postgres.js')], {
  env: { ...process.env, LOG_LEVEL: 'silent', ...env }, encoding: 'utf8', timeout: 60_000, cwd: ROOT
})

t.test('jobs, checkpoints, histories and matrices move with their ids; the next id is past every old one', async (t) => {
  const cluster = await startPostgres(t)
  const url = await cluster.createDatabase()
  const { db, path, store } = tmpDb(t)
  const matrices = createMatrixStore(db)
  const params = { n: 8, steps: 30, seed: 5 }
  const newJob = (over: Record<string, unknown> = {}) => ({ type: 'lyapunov', name: null, params, priority: 0, steps: 30, timeoutMs: null, idempotencyKey: null, retryOf: null, ...over })
  const done = store.submit(newJob({ name: 'finished' }), 100).row
  const c1 = store.claimNext('w1')!
  store.begin(c1, { step: 0, progress: 0, pid: 1 })
  store.complete(c1, { lyapunov: 1.5 })
  const gone = store.submit(newJob(), 100).row
  store.cancel(gone.id)
  store.remove(gone.id)
  const running = store.submit(newJob({ name: 'was running', params: { ...params, seed: 6 } }), 100).row
  const c2 = store.claimNext('w2')!
  store.begin(c2, { step: 0, progress: 0, pid: 2 })
  const run6 = new LyapunovRun({ ...params, seed: 6 })
  for (let i = 0; i < 10; i++) run6.advance()
  const saved = run6.checkpoint()
  const state = Buffer.from(saved.state.buffer, saved.state.byteOffset, saved.state.byteLength)
  t.ok(store.saveCheckpoint(c2, { step: saved.step, state }, 33).ok)
  const cancelAsked = store.submit(newJob({ name: 'cancel asked' }), 100).row
  const c3 = store.claimNext('w3')!
  t.equal(c3.id, cancelAsked.id)
  t.ok(store.requestStop(cancelAsked.id, 'cancel', 'api'), 'a cancel its worker never carried out')
  const pending = store.submit(newJob({ priority: 3, idempotencyKey: 'k-1' }), 100).row
  const newest = store.submit(newJob({ name: 'newest, deleted' }), 100).row
  store.cancel(newest.id)
  store.remove(newest.id)
  const m = matrices.insert({ name: 'a', rows: 2, cols: 3, data: new Float64Array([1, -0, 2.5, Number.MIN_VALUE, -3, 1e300]) })
  t.equal(running.id, c2.id)
  t.ok(done.id < running.id && gone.id < running.id)

  // A server holding the file: refused, nothing moved.
  const lock = acquireServerLock(db)
  const refused = run({ DB_PATH: path, DATABASE_URL: url })
  lock.release()
  t.equal(refused.status, 1, 'refused while a server holds the database')
  t.match(refused.stderr, /server/)

  const moved = run({ DB_PATH: path, DATABASE_URL: url })
  t.equal(moved.status, 0, moved.stderr)
  t.match(moved.stdout, /moved 4 jobs \(1 running ones back to pending\), 1 checkpoints/)

  const pgc = new pg.Client({ connectionString: url })
  await pgc.connect()
  t.teardown(() => pgc.end())
  const { rows: jobs } = await pgc.query('SELECT id::int, status, name, params, result, attempts, priority, idempotency_key FROM jobs ORDER BY id')
  t.same(jobs.map((j) => j.id), [done.id, running.id, cancelAsked.id, pending.id], 'the same ids (the deleted ones stay deleted)')
  t.same(jobs.map((j) => j.status), ['done', 'pending', 'canceled', 'pending'], 'the running job is pending again; the cancel asked of the other is carried out')
  t.equal(jobs[0].result, store.get(done.id)!.result, 'result bytes kept')
  t.equal(jobs[1].params, store.get(running.id)!.params, 'params bytes kept')
  t.equal(jobs[1].attempts, 0, 'the interrupted attempt is given back')
  t.equal(jobs[3].idempotency_key, 'k-1')
  const { rows: [cp] } = await pgc.query('SELECT step, state FROM checkpoints WHERE job_id = $1', [running.id])
  t.equal(cp.step, saved.step)
  t.ok(Buffer.compare(cp.state, state) === 0, 'checkpoint bytes kept')
  const { rows: [mat] } = await pgc.query('SELECT id::int, data, sha256 FROM matrices')
  t.equal(mat.id, m.id)
  t.ok(Buffer.compare(mat.data, matrices.loadBytes(m.id)!.data) === 0, 'matrix bytes kept, -0 and subnormals included')
  const { rows: ev } = await pgc.query('SELECT kind FROM job_events WHERE job_id = $1 ORDER BY id', [done.id])
  t.same(ev.map((e) => e.kind), store.events(done.id).map((e) => e.kind), 'history kept')

  // Again: the target is not empty any more.
  const again = run({ DB_PATH: path, DATABASE_URL: url })
  t.equal(again.status, 1)
  t.match(again.stderr, /not empty/)

  // A node on PostgreSQL finishes the moved job from its checkpoint and gives new ids past every old one.
  const node = await startServer(t, { DATABASE_URL: url, NODE_ID: 'moved', HEARTBEAT_MS: '200', CHECKPOINT_MS: '300', LEASE_MS: '3000', WARM_SPARE: 'false' })
  const finished = await waitFor(async () => { const j = (await api(node.url, `/api/jobs/${running.id}`)).body; return j.status === 'done' && j }, 60_000, 'moved job done')
  const ref = new LyapunovRun({ ...params, seed: 6 })
  while (!ref.finished) ref.advance()
  t.ok(Object.is(finished.result.lyapunov, ref.result().lyapunov), 'resumed on PostgreSQL to the uninterrupted answer')
  const { body: fresh } = await api(node.url, '/api/jobs', { body: params })
  t.ok(fresh.id > newest.id, `a new job gets id ${fresh.id}, past every id SQLite gave (${newest.id} was deleted before the move)`)
  t.equal(await node.stop(), 0)
})
