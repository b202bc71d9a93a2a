/**
 * One server per database: the lock row (src/server-lock.ts) on its own, then two real servers on one file.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { hostname } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { openDb } from '../src/db.js'
import { hasProc, processStartTime } from '../src/process-identity.js'
import { acquireServerLock, ServerLockHeldError, STALE_MS } from '../src/server-lock.js'
import { api, freePort, ROOT, startServer, tmpDb, waitFor } from './fixtures/helpers.js'

t.test('the lock is taken once; a live holder is named and refused; a release frees it', async (t) => {
  const { db } = tmpDb(t)
  const first = acquireServerLock(db)
  const row = db.prepare('SELECT * FROM server_lock').get() as Record<string, unknown>
  t.match(row, { pid: process.pid, host: hostname(), holder: first.holder }, 'the row names this process')
  const err = t.throws(() => acquireServerLock(db), ServerLockHeldError, 'a second taker is refused') as ServerLockHeldError
  t.match(err.message, new RegExp(`pid ${process.pid} on ${hostname()}, since \\d{4}-\\d\\d-\\d\\dT`), err.message)
  t.ok(first.refresh(), 'the holder refreshes its heartbeat')
  first.release()
  t.equal(db.prepare('SELECT count(*) FROM server_lock').pluck().get(), 0, 'released')
  const second = acquireServerLock(db)
  t.not(second.holder, first.holder, 'taken again after the release')
  t.notOk(first.refresh(), 'the old holding is gone for good')
})

t.test('a holder whose process is gone is taken over at once, whatever its heartbeat', { skip: !hasProc() && 'needs Linux /proc' }, async (t) => {
  const { db } = tmpDb(t)
  const dead = spawn('sleep', ['30'], { stdio: 'ignore' })
  await once(dead, 'spawn')
  const pid = dead.pid as number
  const start = processStartTime(pid)
  dead.kill('SIGKILL')
  await once(dead, 'exit')
  const now = Date.now()
  db.prepare("INSERT INTO server_lock VALUES (1, 'old', ?, ?, NULL, ?, ?, ?)").run(pid, start, hostname(), now - 1000, now)
  t.doesNotThrow(() => acquireServerLock(db), 'a killed server does not block its restart')

  // Its pid now names another process (a different start time): gone as well.
  db.prepare("UPDATE server_lock SET pid = ?, pid_start = ?, heartbeat_at = ?, holder = 'old'").run(process.pid, (processStartTime() as number) - 5, Date.now())
  t.doesNotThrow(() => acquireServerLock(db), 'a reused pid does not hold the database')
})

t.test('a holder on another host holds the lock until its heartbeat is stale', async (t) => {
  const { db } = tmpDb(t)
  let now = 1_000_000
  db.prepare("INSERT INTO server_lock VALUES (1, 'remote', 4242, 1, 'x', 'other-host', ?, ?)").run(now - 60_000, now)
  now += STALE_MS - 1000
  t.throws(() => acquireServerLock(db, () => now), { name: 'ServerLockHeldError', message: /pid 4242 on other-host/ }, 'refused while it beats')
  now += 2000
  t.doesNotThrow(() => acquireServerLock(db, () => now), `taken once silent for more than ${STALE_MS / 1000} s`)
})

t.test('a second server on the same database exits at once, names the first, and changes no row', async (t) => {
  const dir = t.testdir({})
  const env = { DB_PATH: join(dir, 'jobs.db'), MAX_CONCURRENCY: '1', HEARTBEAT_MS: '200', CHECKPOINT_MS: '500', LEASE_MS: '3000' }
  const first = await startServer(t, { ...env, LOG_FILE: join(dir, 'first.log') })
  const running = (await api(first.url, '/api/jobs', { body: { n: 150, steps: 10_000, seed: 1 } })).body
  const waiting = (await api(first.url, '/api/jobs', { body: { n: 150, steps: 10_000, seed: 2 } })).body
  await waitFor(async () => (await api(first.url, `/api/jobs/${running.id}`)).body.step > 0, 60_000, 'the first job to compute')

  // What a second scheduler would change: claims, leases, attempts, owners, stop requests, statuses.
  const db = openDb(env.DB_PATH)
  t.teardown(() => db.close())
  const dump = () => db.prepare('SELECT id, status, lease, attempts, worker, pid, stop_request, error FROM jobs ORDER BY id').all()
  const before = dump()
  t.match(before, [{ id: running.id, status: 'running' }, { id: waiting.id, status: 'pending' }], 'one job running, one waiting')

  const started = Date.now()
  const second = spawn(process.execPath, [join(ROOT, 'dist/server.js')], {
    cwd: dir,
    env: { ...process.env, ...env, MAX_CONCURRENCY: '3', HOST: '127.0.0.1', PORT: String(await freePort()), LOG_FILE: join(dir, 'second.log'), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  t.teardown(() => { second.kill('SIGKILL') })
  let stderr = ''
  second.stderr.on('data', (c) => { stderr += c })
  const [code] = await once(second, 'exit')
  const took = Date.now() - started
  t.not(code, 0, `the second server exits non-zero (${code})`)
  t.ok(took < 15_000, `within ${took} ms (node's own start included)`)
  t.match(stderr, new RegExp(`another nonstop server holds this database: pid ${first.proc.pid} on ${hostname()}, since \\d{4}-`), stderr.trim())
  t.same(dump(), before, 'no job row changed')

  const job = (await api(first.url, `/api/jobs/${running.id}`)).body
  t.match(job, { status: 'running', attempts: 1 }, 'the first server still runs its job, first attempt')
  t.equal(await first.stop(), 0, 'the first server stops cleanly')
  t.equal(db.prepare('SELECT count(*) FROM server_lock').pluck().get(), 0, 'and gives the database up')
})
