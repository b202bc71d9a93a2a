import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { JOURNAL_SIZE_LIMIT, latestSchemaVersion, MIGRATIONS_DIR, migrate, openDb, startWalCheckpoints } from '../src/db.js'

t.test('migrate creates the schema, records the version, and a second run is a no-op', async (t) => {
  const db = openDb(join(t.testdir({}), 'a.db'))
  t.teardown(() => db.close())
  const applied = migrate(db)
  t.same(applied.slice(0, 5), [1, 2, 3, 4, 5], 'first run applies 001, 002, 003, 004, 005, …')
  t.equal(applied.at(-1), latestSchemaVersion(), '… to the latest')
  t.equal(db.pragma('user_version', { simple: true }), latestSchemaVersion(), 'user_version recorded')
  t.same(migrate(db), [], 'second run applies nothing')
  const triggers = db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name").pluck().all()
  t.same(triggers, ['job_events_bounded', 'jobs_seq_on_insert', 'jobs_seq_on_update', 'jobs_tombstone_on_delete'], 'change-counter triggers, and the bound of each job\'s history')
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all()
  for (const table of ['change_counter', 'checkpoints', 'job_events', 'job_tombstones', 'jobs', 'matrices', 'server_lock', 'sqlite_sequence']) {
    t.ok(tables.includes(table), `table ${table} exists (sqlite_sequence: ids are AUTOINCREMENT)`)
  }
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal', 'WAL mode')
  t.equal(db.pragma('busy_timeout', { simple: true }), 10000, 'busy timeout set')
  t.equal(db.pragma('foreign_keys', { simple: true }), 1, 'foreign keys on')
  t.equal(db.pragma('journal_size_limit', { simple: true }), JOURNAL_SIZE_LIMIT, 'the WAL is truncated after a checkpoint')
})

t.test('a failing migration rolls back whole and leaves the version alone', async (t) => {
  const dir = t.testdir({})
  const migrations = join(dir, 'migrations')
  mkdirSync(migrations)
  writeFileSync(join(migrations, '001_ok.sql'), 'CREATE TABLE a (x INTEGER);')
  writeFileSync(join(migrations, '002_bad.sql'), 'CREATE TABLE b (x INTEGER); INSERT INTO nope VALUES (1);')
  const db = openDb(join(dir, 'b.db'))
  t.teardown(() => db.close())
  t.throws(() => migrate(db, migrations), /no such table: nope/, 'the bad file fails')
  t.equal(db.pragma('user_version', { simple: true }), 1, 'version stays at the last good file')
  t.equal(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'b'").pluck().get(), 0, 'half of 002 was rolled back')
})

t.test('a database newer than the code is refused', async (t) => {
  const db = openDb(join(t.testdir({}), 'c.db'))
  t.teardown(() => db.close())
  db.pragma('user_version = 999')
  t.throws(() => migrate(db), /newer than this code knows/, 'refused')
})

t.test('003 rebuilds jobs with AUTOINCREMENT and keeps rows, checkpoints, indexes and triggers', async (t) => {
  const dir = t.testdir({})
  // The files up to 002, then up to 003: later migrations may change the triggers again.
  const upTo = (last: number): string => {
    const to = join(dir, `migrations-${last}`)
    mkdirSync(to)
    for (const f of readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{3}_/.test(f) && Number(f.slice(0, 3)) <= last)) copyFileSync(join(MIGRATIONS_DIR, f), join(to, f))
    return to
  }
  const old = upTo(2)
  const db = openDb(join(dir, 'd.db'))
  t.teardown(() => db.close())
  t.same(migrate(db, old), [1, 2], 'a database at version 2')
  const insert = db.prepare("INSERT INTO jobs (params, steps, status, created_at, updated_at) VALUES ('{}', 3, ?, 1, 1)")
  for (const status of ['done', 'running', 'pending', 'done']) insert.run(status)
  db.prepare('INSERT INTO checkpoints (job_id, lease, step, state, saved_at) VALUES (2, 1, 1, ?, 1)').run(Buffer.alloc(8, 7))
  db.prepare('DELETE FROM jobs WHERE id = 4').run()
  const dump = () => db.prepare('SELECT id, status, seq FROM jobs ORDER BY id').all()
  const rows = dump()
  const indexes = () => db.prepare("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = 'jobs' ORDER BY name").all()
  const before = indexes()

  t.same(migrate(db, upTo(3)), [3], '003 applied')
  t.same(dump(), rows, 'every row kept, with its change number')
  t.same(indexes(), before, 'indexes and triggers as they were')
  t.same(db.prepare('SELECT job_id, state FROM checkpoints').all(), [{ job_id: 2, state: Buffer.alloc(8, 7) }], 'the checkpoint is still attached to its job')
  t.equal(db.pragma('foreign_keys', { simple: true }), 1, 'foreign keys back on')
  t.same(db.pragma('foreign_key_check'), [], 'no broken reference')
  insert.run('pending')
  const next = db.prepare('SELECT max(id) FROM jobs').pluck().get() as number
  t.equal(next, 4, 'ids continue after the highest kept row (the id deleted before the upgrade could not be known)')
  db.prepare('DELETE FROM jobs WHERE id = 4').run()
  insert.run('pending')
  t.equal(db.prepare('SELECT max(id) FROM jobs').pluck().get(), 5, 'and from now on an id is never handed out twice')
})

t.test('a failing WAL checkpoint is reported, never thrown from the timer', async (t) => {
  const db = openDb(join(t.testdir({}), 'w.db'))
  db.close() // As good as a disk that fails: every statement throws.
  const errors: unknown[] = []
  const timer = startWalCheckpoints(db, (err) => errors.push(err), 20)
  t.teardown(() => clearInterval(timer))
  await new Promise((resolve) => setTimeout(resolve, 120))
  t.ok(errors.length >= 2, `${errors.length} failures reported, and the timer keeps going`)
  t.match(String(errors[0]), /not open/, 'with the reason')
})
