/**
 * Opens the stores the configuration names: PostgreSQL when DATABASE_URL is set (migrated first, under the
 * migrations' advisory lock, by servers; checked, not migrated, by workers), SQLite at DB_PATH otherwise. The
 * server and its workers call this and nothing else to reach the database.
 */
import type { Config } from '../config.js'
import { type Db, latestSchemaVersion, migrate, openDb } from '../db.js'
import type { AsyncJobStore } from './job-store.js'
import { type AsyncMatrixStore, createSqliteMatrixStore } from './matrix-store.js'
import { createSqliteJobStore } from './sqlite.js'

export interface Stores {
  readonly kind: 'sqlite' | 'postgres'
  readonly jobs: AsyncJobStore
  readonly matrices: AsyncMatrixStore
  /** The SQLite database, for what only SQLite has (the server lock, WAL checkpoints); undefined on PostgreSQL. */
  readonly sqlite: Db | undefined
  /** Migration versions applied by this call (a server's; a worker migrates nothing). */
  readonly applied: number[]
  /** Throws, with the reason, when the database is not usable now (/readyz answers 503 with it). */
  ready (): Promise<void>
  close (): Promise<void>
}

export interface OpenOptions {
  /** 'server' migrates; 'worker' only checks the schema is the one this code knows. */
  role: 'server' | 'worker'
  /** Errors of idle PostgreSQL connections (a restart of PostgreSQL): logged, never a crash. */
  onError?: (err: Error) => void
  /** The lease (ms): on PostgreSQL a session idle inside a transaction for half of it is ended (its locks freed). */
  leaseMs?: number
}

export async function openStores (config: Pick<Config, 'databaseUrl' | 'dbPath' | 'pgPoolMax'>, { role, onError, leaseMs = 10_000 }: OpenOptions): Promise<Stores> {
  if (config.databaseUrl === undefined) {
    const db = openDb(config.dbPath)
    const applied = role === 'server' ? migrate(db) : []
    return {
      kind: 'sqlite',
      jobs: createSqliteJobStore(db),
      matrices: createSqliteMatrixStore(db),
      sqlite: db,
      applied,
      ready: async () => {
        if (!db.open) throw new Error('database is closed')
        const version = db.pragma('user_version', { simple: true }) as number
        const expected = latestSchemaVersion()
        if (version !== expected) throw new Error(`database schema is version ${version}, this code needs ${expected}`)
        db.prepare('BEGIN IMMEDIATE').run()
        db.prepare('ROLLBACK').run()
      },
      close: async () => { if (db.open) db.close() }
    }
  }
  // Loaded only here: a process on SQLite (every worker of a SQLite server) never pays for loading pg.
  const [{ createPostgresJobStore, openPostgres }, { createPostgresMatrixStore }, { latestPgSchemaVersion, migratePostgres, pgSchemaVersion }] =
    await Promise.all([import('./postgres.js'), import('./postgres-matrices.js'), import('./postgres-migrate.js')])
  // A worker writes one thing at a time: one connection (plus one spare for a replaced broken one).
  const pool = openPostgres(config.databaseUrl, { max: role === 'server' ? config.pgPoolMax : 2, onError, idleInTransactionMs: Math.max(250, Math.floor(leaseMs / 2)) })
  try {
    const applied = role === 'server' ? await migratePostgres(pool) : []
    const expected = latestPgSchemaVersion()
    const version = await pgSchemaVersion(pool)
    if (version !== expected) throw new Error(`PostgreSQL schema is version ${version}, this code needs ${expected}`)
    return {
      kind: 'postgres',
      jobs: createPostgresJobStore(pool),
      matrices: createPostgresMatrixStore(pool),
      sqlite: undefined,
      applied,
      ready: async () => {
        const version = await pgSchemaVersion(pool)
        if (version !== expected) throw new Error(`PostgreSQL schema is version ${version}, this code needs ${expected}`)
      },
      close: () => pool.end()
    }
  } catch (err) {
    await pool.end().catch(() => {})
    throw err
  }
}
