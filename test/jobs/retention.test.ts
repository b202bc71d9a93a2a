import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { migrate, openDb } from '../../src/db.js'
import { createJobStore, type JobStore } from '../../src/jobs/store.js'
import type { NewJob } from '../../src/jobs/types.js'
import { startServer, tmpDb, waitFor } from '../fixtures/helpers.js'

const DAY = 86_400_000

const job = (name: string): NewJob => ({
  type: 'lyapunov',
  name,
  params: { n: 2, steps: 3, seed: 1 },
  steps: 3,
  priority: 0,
  timeoutMs: null,
  idempotencyKey: null,
  retryOf: null
})

/** A store whose clock the test sets, so jobs can be made to have finished long ago. */
function clocked (db: Parameters<typeof createJobStore>[0]) {
  const clock = { now: Date.now() }
  return { store: createJobStore(db, () => clock.now), clock }
}

/** Submits and takes a job to `status` at `at` (epoch ms); returns its id. */
function make (store: JobStore, clock: { now: number }, name: string, status: 'done' | 'failed' | 'canceled' | 'pending' | 'running', at: number): number {
  clock.now = at
  const { id } = store.submit(job(name), 1_000_000).row
  if (status === 'pending') return id
  if (status === 'canceled') {
    store.cancel(id)
    return id
  }
  const row = store.claimNext(`w-${name}`)
  if (!row || row.id !== id) throw new Error('claimed another job')
  if (status === 'done') store.complete(row, { ok: true })
  if (status === 'failed') store.fail(row, 'broken')
  return id
}

const checkpoint = (db: ReturnType<typeof tmpDb>['db'], id: number): void => {
  db.prepare('INSERT INTO checkpoints (job_id, lease, step, state, saved_at) VALUES (?, 1, 1, ?, 0)').run(id, Buffer.from('state'))
}

t.test('purgeFinishedBefore removes only finished jobs older than the cutoff, with their checkpoints', async (t) => {
  const { db } = tmpDb(t)
  const { store, clock } = clocked(db)
  const now = Date.now()
  const cutoff = now - 30 * DAY
  const oldDone = make(store, clock, 'old done', 'done', cutoff - DAY)
  const oldFailed = make(store, clock, 'old failed', 'failed', cutoff - 2 * DAY)
  const oldCanceled = make(store, clock, 'old canceled', 'canceled', cutoff - 1)
  const atCutoff = make(store, clock, 'at the cutoff', 'done', cutoff)
  const recent = make(store, clock, 'recent done', 'done', now - DAY)
  const oldRunning = make(store, clock, 'old running', 'running', cutoff - 10 * DAY)
  const oldPending = make(store, clock, 'old pending', 'pending', cutoff - 10 * DAY)
  // A finished job can keep a checkpoint (a stop settled by the server); a running one always may.
  checkpoint(db, oldFailed)
  checkpoint(db, recent)
  checkpoint(db, oldRunning)
  // Checkpoints go by the store's own DELETE, not only by ON DELETE CASCADE.
  db.pragma('foreign_keys = OFF')

  clock.now = now
  t.equal(store.purgeFinishedBefore(cutoff), 3, 'three jobs purged')
  for (const id of [oldDone, oldFailed, oldCanceled]) t.equal(store.get(id), undefined, `job ${id} is gone`)
  for (const id of [atCutoff, recent, oldPending, oldRunning]) t.ok(store.get(id), `job ${id} (${store.get(id)?.name}) is kept`)
  const checkpoints = db.prepare('SELECT job_id FROM checkpoints ORDER BY job_id').pluck().all()
  t.same(checkpoints, [recent, oldRunning], 'only the purged job\'s checkpoint went')
  t.equal(store.purgeFinishedBefore(cutoff), 0, 'a second purge finds nothing')
})

t.test('purgeFinishedBefore goes in batches until none is left', async (t) => {
  const { db } = tmpDb(t)
  const { store, clock } = clocked(db)
  const old = Date.now() - 100 * DAY
  for (let i = 0; i < 7; i++) make(store, clock, `old ${i}`, i % 2 ? 'done' : 'canceled', old + i)
  const kept = make(store, clock, 'new', 'done', Date.now())
  t.equal(store.purgeFinishedBefore(Date.now() - DAY, 2), 7, 'all seven purged, two at a time')
  t.same(db.prepare('SELECT id FROM jobs').pluck().all(), [kept], 'only the new job left')
})

t.test('DELETE of a finished job leaves nothing of it behind (ON DELETE CASCADE and the store agree)', async (t) => {
  const { db, store } = tmpDb(t)
  const id = store.submit(job('delete me'), 100).row.id
  const row = store.claimNext('w')
  if (row) store.fail(row, 'broken')
  checkpoint(db, id)
  store.remove(id)
  t.equal(store.get(id), undefined, 'the row is gone')
  t.equal(db.prepare('SELECT count(*) FROM checkpoints WHERE job_id = ?').pluck().get(id), 0, 'its checkpoint too')
})

t.test('the server purges at start when RETENTION_DAYS is set, and keeps everything with 0', async (t) => {
  // Not t.testdir(): startServer takes that folder afresh for its own log.
  const dir = mkdtempSync(join(tmpdir(), 'nonstop-retention-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const dbPath = join(dir, 'jobs.db')
  const db = openDb(dbPath)
  migrate(db)
  const { store, clock } = clocked(db)
  const old = make(store, clock, 'old', 'done', Date.now() - 10 * DAY)
  const recent = make(store, clock, 'recent', 'done', Date.now() - DAY)
  db.close()

  const keep = await startServer(t, { DB_PATH: dbPath, RETENTION_DAYS: '0', MAX_CONCURRENCY: '1', WARM_SPARE: 'false' })
  t.equal((await fetch(`${keep.url}/api/jobs/${old}`)).status, 200, 'RETENTION_DAYS=0 keeps the old job')
  await keep.stop()

  const server = await startServer(t, { DB_PATH: dbPath, RETENTION_DAYS: '5', MAX_CONCURRENCY: '1', WARM_SPARE: 'false' })
  const line = await waitFor(() => server.logs().find((l) => l.event === 'purged'), 10_000, 'the purge log line')
  t.match(line, { purged: 1, retentionDays: 5 }, 'one job purged, logged with the setting')
  t.equal((await fetch(`${server.url}/api/jobs/${old}`)).status, 404, 'the job finished 10 days ago is gone')
  t.equal((await fetch(`${server.url}/api/jobs/${recent}`)).status, 200, 'the job finished yesterday is kept')
  t.equal(await server.stop(), 0, 'the server stops cleanly')
})
