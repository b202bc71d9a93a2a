import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'

export type Db = Database.Database

/** Folder of the numbered migrations, the same relative path from src/ and from dist/. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url))

/**
 * Opens the database the way every process must: WAL so readers never wait for the writer, a busy timeout
 * so concurrent writers queue instead of failing with SQLITE_BUSY, foreign keys on.
 */
export function openDb (path: string): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
  const db = new Database(path, NATIVE_BINDING ? { nativeBinding: NATIVE_BINDING } : {})
  db.pragma('journal_mode = WAL')
  db.pragma('busy_timeout = 10000')
  db.pragma('synchronous = NORMAL')
  db.pragma('foreign_keys = ON')
  // After a checkpoint empties the WAL, truncate the file to this size rather than keep its high-water mark
  // (a burst of large checkpoints would otherwise leave a WAL of hundreds of MB on disk for good).
  db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`)
  return db
}

/**
 * How a store prepares its statements. Eager (the server, tests, tools): all of them when the store is made, so
 * every statement's SQL is checked against the schema at start. Lazy (a worker's stores): each at its first use; a
 * worker runs about ten of the ~45, and preparing them all cost each new worker ~2 ms of CPU (docs/benchmarks.md,
 * "2026-12-06, evening"). Either way a statement is prepared once per connection.
 */
export function statementPreparer (eager: boolean): <T>(prepare: () => T) => () => T {
  return <T>(prepare: () => T): (() => T) => {
    let statement: T | undefined = eager ? prepare() : undefined
    return () => (statement ??= prepare())
  }
}

/**
 * The driver's compiled addon where `npm ci` builds it, given to the driver directly (its documented
 * `nativeBinding` option) so that it does not probe a dozen candidate paths for it: ~4 ms of every worker's start.
 * Where it is not there (another build layout), the driver finds it as usual.
 */
const NATIVE_BINDING = ((): string | undefined => {
  try {
    const file = join(dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node')
    return existsSync(file) ? file : undefined
  } catch {
    return undefined
  }
})()

/** Bytes the WAL file is truncated to once checkpointed (64 MB). */
export const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

/**
 * Checkpoints the WAL every `everyMs` (several processes write, so it would grow without bound otherwise). A
 * failure (disk full, I/O error, a closed database) goes to `onError`, never to the event loop: a timer that
 * throws would crash the server. The timer is unref'd.
 */
export function startWalCheckpoints (db: Db, onError: (err: unknown) => void, everyMs = 10_000): NodeJS.Timeout {
  const timer = setInterval(() => {
    try {
      db.pragma('wal_checkpoint(PASSIVE)')
    } catch (err) {
      onError(err)
    }
  }, everyMs)
  timer.unref()
  return timer
}

/** A migration file: `NNN_name.sql`, applied in number order. */
export interface Migration { version: number, name: string, sql: string }

/** The migration files of `dir`, in number order (SQLite's here, PostgreSQL's in migrations/postgres/). */
export function readMigrations (dir: string): Migration[] {
  return migrationFiles(dir).map((f) => ({ version: Number(f.slice(0, 3)), name: f, sql: readFileSync(`${dir}/${f}`, 'utf8') }))
}

function migrationFiles (dir: string): string[] {
  return readdirSync(dir).filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f)).sort()
}

/** Schema version the code in this checkout expects (the highest migration number; from the names alone). */
export function latestSchemaVersion (dir = MIGRATIONS_DIR): number {
  const last = migrationFiles(dir).at(-1)
  return last === undefined ? 0 : Number(last.slice(0, 3))
}

/**
 * Applies the migrations newer than the database's `user_version`, each in its own transaction that also sets
 * `user_version`, so a failed file rolls back whole. Running it again is a no-op. Refuses a database whose
 * schema is newer than this code. Returns the versions applied.
 */
export function migrate (db: Db, dir = MIGRATIONS_DIR): number[] {
  const current = db.pragma('user_version', { simple: true }) as number
  const migrations = readMigrations(dir)
  const latest = migrations.at(-1)?.version ?? 0
  if (current > latest) {
    throw new Error(`database schema version ${current} is newer than this code knows (${latest}); upgrade nonstop`)
  }
  const applied: number[] = []
  // A migration may rebuild a table (SQLite's ALTER TABLE cannot add AUTOINCREMENT): foreign keys are off while
  // it runs, so dropping the old table does not cascade, and checked before its transaction commits.
  const foreignKeys = db.pragma('foreign_keys', { simple: true }) as number
  db.pragma('foreign_keys = OFF')
  try {
    for (const m of migrations) {
      if (m.version <= current) continue
      db.transaction(() => {
        db.exec(m.sql)
        const broken = db.pragma('foreign_key_check') as unknown[]
        if (broken.length > 0) throw new Error(`migration ${m.name} leaves ${broken.length} broken foreign keys`)
        db.pragma(`user_version = ${m.version}`)
      }).immediate()
      applied.push(m.version)
    }
  } finally {
    db.pragma(`foreign_keys = ${foreignKeys ? 'ON' : 'OFF'}`)
  }
  return applied
}
