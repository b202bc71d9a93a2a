/**
 * Opens the stores the configuration names: PostgreSQL when DATABASE_URL is set (migrated first, under the
 * migrations' advisory lock, by servers; checked, not migrated, by workers), SQLite at DB_PATH otherwise. The
 * server and its workers call this and nothing else to reach the database.
 */
import type { Config } from '../config.js'
import { type Db, latestSchemaVersion, migrate, openDb } from '../db.js'
import type { AsyncJobStore } from './job-store.js'
import type { AsyncMatrixStore } from './matrix-store.js'
import { createSqliteStores } from './sqlite.js'

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
  /** On PostgreSQL: how long a connection may take to be ready (default CONNECT_TIMEOUT_MS, 15 s). */
  connectTimeoutMs?: number
}

export async function openStores (config: Pick<Config, 'databaseUrl' | 'dbPath' | 'pgPoolMax'>, { role, onError, leaseMs = 10_000, connectTimeoutMs }: OpenOptions): Promise<Stores> {
  if (config.databaseUrl === undefined) {
    const db = openDb(config.dbPath)
    const applied = role === 'server' ? migrate(db) : []
    // A worker prepares each statement when it first runs it; a server checks them all at start.
    const { jobs, matrices } = createSqliteStores(db, Date.now, { eager: role === 'server' })
    return {
      kind: 'sqlite',
      jobs,
      matrices,
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
  const pool = openPostgres(config.databaseUrl, { max: role === 'server' ? config.pgPoolMax : 2, onError, idleInTransactionMs: Math.max(250, Math.floor(leaseMs / 2)), connectTimeoutMs })
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

/** Connection failures that say PostgreSQL is not there yet (not up, starting, restarting, its name not yet in DNS),
 *  as opposed to ones that waiting cannot fix (a wrong password, a missing database, another schema). */
const NOT_UP_YET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
  '57P03', // cannot_connect_now: the database system is starting up or shutting down
  '53300' // too_many_connections: another process may give one back
])

/** Whether waiting for PostgreSQL may cure this error of a first connection. */
export function notUpYet (err: unknown): boolean {
  const e = err as { code?: unknown, errors?: Array<{ code?: unknown }>, message?: unknown }
  const codes = [e?.code, ...(Array.isArray(e?.errors) ? e.errors.map((x) => x?.code) : [])]
  if (codes.some((c) => typeof c === 'string' && NOT_UP_YET.has(c))) return true
  // pg's own words when the server closes a connection it has just accepted (it is shutting down or restarting).
  return typeof e?.message === 'string' && /^Connection terminated/.test(e.message)
}

/** First pause between two tries to reach PostgreSQL at start, doubled each time up to the cap. */
const WAIT_FIRST_MS = 250
const WAIT_CAP_MS = 5000

/**
 * openStores, waiting for PostgreSQL when it is not up yet: a node started with (or before) its database, by a
 * service manager or a compose file, tries again with a growing pause for up to `waitSeconds`, saying so each time,
 * instead of exiting at the first refused connection. Errors that waiting cannot fix are thrown at once, and so is
 * the last one when the time is up. SQLite is a file: it is opened once.
 */
export async function openStoresWaiting (
  config: Pick<Config, 'databaseUrl' | 'dbPath' | 'pgPoolMax' | 'dbWaitSeconds'>,
  options: OpenOptions,
  onRetry: (err: Error, attempt: number, pauseMs: number) => void,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
): Promise<Stores> {
  const until = Date.now() + config.dbWaitSeconds * 1000
  let pause = WAIT_FIRST_MS
  for (let attempt = 1; ; attempt++) {
    try {
      return await openStores(config, options)
    } catch (err) {
      const left = until - Date.now()
      if (config.databaseUrl === undefined || !notUpYet(err) || left <= 0) throw err
      const wait = Math.min(pause, left)
      onRetry(err as Error, attempt, wait)
      await sleep(wait)
      pause = Math.min(WAIT_CAP_MS, pause * 2)
    }
  }
}
