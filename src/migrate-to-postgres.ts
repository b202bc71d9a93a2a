/**
 * `npm run migrate-to-postgres`: moves the jobs, checkpoints, histories and matrices of the SQLite database at
 * DB_PATH into the empty PostgreSQL database at DATABASE_URL (migrated first), keeping their ids. Stop the server
 * first: the move holds the SQLite file's server lock and refuses while a server runs. Exit 0 when moved; 1 with
 * the reason, having changed nothing, otherwise.
 */
import { existsSync } from 'node:fs'
import { ConfigError, loadConfig } from './config.js'
import { migrate, openDb } from './db.js'
import { openPostgres } from './store/postgres.js'
import { migratePostgres } from './store/postgres-migrate.js'
import { sqliteToPostgres } from './store/sqlite-to-postgres.js'

const fail = (message: string): never => {
  process.stderr.write(`migrate-to-postgres: ${message}\n`)
  process.exit(1)
}

let config
try {
  config = loadConfig()
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  fail(`invalid configuration: ${err.message}`)
}
if (!config) process.exit(1)
if (config.databaseUrl === undefined) fail('set DATABASE_URL to the PostgreSQL database to move into (postgres://…)')
if (!existsSync(config.dbPath)) fail(`no SQLite database at DB_PATH=${config.dbPath}`)

const db = openDb(config.dbPath)
const pool = openPostgres(config.databaseUrl as string, { max: 2 })
try {
  await migratePostgres(pool)
  // The file is brought to this code's schema, as the server would at its start, once its server lock is held (a
  // file older than the lock itself, migration 003, is migrated first: no server of that age takes the lock).
  if ((db.pragma('user_version', { simple: true }) as number) < 3) migrate(db)
  const moved = await sqliteToPostgres(db, pool, () => { migrate(db) })
  process.stdout.write(`moved ${moved.jobs} jobs (${moved.requeued} running ones back to pending), ${moved.checkpoints} checkpoints, ` +
    `${moved.events} history events and ${moved.matrices} matrices from ${config.dbPath}; the next job id is ${moved.nextJobId}\n`)
} catch (err) {
  fail((err as Error).message)
} finally {
  await pool.end().catch(() => {})
  db.close()
}
