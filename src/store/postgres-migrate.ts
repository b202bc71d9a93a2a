/**
 * PostgreSQL migrations: migrations/postgres/NNN_name.sql, applied in number order, each in its own transaction
 * that also records it in `schema_migrations`. The whole run holds a session advisory lock, so several nodes
 * starting at once apply each migration once: the first takes the lock and migrates, the others wait for it and
 * then find nothing left to do. A database whose schema is newer than this code is refused.
 */
import { readMigrations } from '../db.js'
import { fileURLToPath } from 'node:url'
import type pg from 'pg'

/** Folder of the PostgreSQL migrations, the same relative path from src/ and from dist/. */
export const PG_MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/postgres/', import.meta.url))

/** Key of the advisory lock migrations run under ('nonstop' in ASCII, as a bigint). */
export const MIGRATION_LOCK_KEY = '31084767612268400'

/** Schema version this code expects on PostgreSQL (the highest migration number). */
export function latestPgSchemaVersion (dir = PG_MIGRATIONS_DIR): number {
  return readMigrations(dir).at(-1)?.version ?? 0
}

/**
 * Applies the migrations the database lacks; returns the versions this call applied (none when another node
 * did them first). Refuses, changing nothing, a database that has a version this code does not know.
 */
export async function migratePostgres (pool: pg.Pool, dir = PG_MIGRATIONS_DIR): Promise<number[]> {
  const migrations = readMigrations(dir)
  const latest = migrations.at(-1)?.version ?? 0
  const client = await pool.connect()
  let broken = false
  try {
    await client.query('SELECT pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY])
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())`)
      const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')
      const current = rows[0].v ?? 0
      if (current > latest) {
        throw new Error(`database schema version ${current} is newer than this code knows (${latest}); upgrade nonstop`)
      }
      const applied: number[] = []
      for (const m of migrations) {
        if (m.version <= current) continue
        await client.query('BEGIN')
        try {
          await client.query(m.sql)
          await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
          await client.query('COMMIT')
        } catch (err) {
          await client.query('ROLLBACK').catch(() => { broken = true })
          throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err })
        }
        applied.push(m.version)
      }
      return applied
    } finally {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY]).catch(() => { broken = true })
    }
  } catch (err) {
    broken = true
    throw err
  } finally {
    // A connection whose state is unknown (a failed unlock or rollback) is closed rather than reused: closing
    // the session also frees its advisory lock.
    client.release(broken)
  }
}

/** The schema version recorded in the database (0 for none), without taking the lock. */
export async function pgSchemaVersion (pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ v: number | null }>(
    "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0 ELSE (SELECT max(version) FROM schema_migrations) END AS v")
  return rows[0].v ?? 0
}
