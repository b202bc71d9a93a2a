import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { latestSchemaVersion, migrate, openDb } from '../src/db.js'

t.test('migrate creates the schema, records the version, and a second run is a no-op', async (t) => {
  const db = openDb(join(t.testdir({}), 'a.db'))
  t.teardown(() => db.close())
  t.same(migrate(db), [1, 2, 5], 'first run applies 001, 002 and 005')
  t.equal(db.pragma('user_version', { simple: true }), latestSchemaVersion(), 'user_version recorded')
  t.same(migrate(db), [], 'second run applies nothing')
  const triggers = db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name").pluck().all()
  t.same(triggers, ['jobs_seq_on_insert', 'jobs_seq_on_update'], 'change-counter triggers')
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all()
  t.same(tables, ['checkpoints', 'jobs', 'matrices', 'sqlite_sequence'], 'tables exist (sqlite_sequence keeps AUTOINCREMENT ids of matrices from being reused)')
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal', 'WAL mode')
  t.equal(db.pragma('busy_timeout', { simple: true }), 10000, 'busy timeout set')
  t.equal(db.pragma('foreign_keys', { simple: true }), 1, 'foreign keys on')
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
