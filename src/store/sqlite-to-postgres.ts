/**
 * Moves a SQLite database's jobs, checkpoints, histories and matrices into an empty PostgreSQL database, keeping
 * every id (`OVERRIDING SYSTEM VALUE`), then moves PostgreSQL's identities past the highest id SQLite ever gave
 * (its AUTOINCREMENT counter, so an id deleted before the move is not handed out again).
 *
 * Runs while no server uses the SQLite file: it holds the file's server lock for the whole copy (a running server
 * makes it refuse, changing nothing). Jobs that were running go back to pending with their checkpoints: their
 * workers were of the old server. Everything is copied in one PostgreSQL transaction: a failure leaves the target
 * as it was. The SQLite file is only read.
 */
import type pg from 'pg'
import type { Db } from '../db.js'
import { acquireServerLock } from '../server-lock.js'

export interface MovedCounts { jobs: number, checkpoints: number, events: number, matrices: number, requeued: number, nextJobId: number }

const BATCH = 500

/** ms since the epoch → a timestamptz parameter (null stays null). */
const ts = (ms: number | null): Date | null => (ms === null ? null : new Date(ms))

/** `prepare` runs once the file's server lock is held, before anything is read (the CLI migrates the file there). */
export async function sqliteToPostgres (db: Db, pool: pg.Pool, prepare: () => void = () => {}): Promise<MovedCounts> {
  const lock = acquireServerLock(db)
  let client: pg.PoolClient | undefined
  let broken = false
  try {
    prepare()
    const pgc = client = await pool.connect()
    // Every read in one SQLite snapshot: a worker left running by a crashed server cannot change the file halfway.
    db.exec('BEGIN')
    await pgc.query('BEGIN')
    try {
      // No node may submit or upload while the copy runs (a node started early waits for the commit).
      await pgc.query('LOCK TABLE jobs, matrices IN EXCLUSIVE MODE')
      const { rows: [present] } = await client.query<{ jobs: string, matrices: string }>(
        'SELECT (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM matrices) AS matrices')
      if (Number(present.jobs) > 0 || Number(present.matrices) > 0) {
        throw new Error(`the PostgreSQL database is not empty (${present.jobs} jobs, ${present.matrices} matrices): move into a new database`)
      }
      const counts: MovedCounts = { jobs: 0, checkpoints: 0, events: 0, matrices: 0, requeued: 0, nextJobId: 1 }

      // Jobs in batches, parents of everything else. A running job's worker belongs to the old server: pending.
      const jobCols = ['id', 'type', 'name', 'params', 'priority', 'status', 'step', 'steps', 'progress', 'result', 'error',
        'attempts', 'lease', 'timeout_ms', 'idempotency_key', 'retry_of', 'created_at', 'started_at', 'finished_at', 'updated_at']
      const insertJobs = async (rows: Array<Record<string, unknown>>): Promise<void> => {
        if (rows.length === 0) return
        const values: unknown[] = []
        const tuples = rows.map((r) => `(${jobCols.map((c) => { values.push(r[c]); return `$${values.length}` }).join(', ')})`)
        await pgc.query(`INSERT INTO jobs (${jobCols.join(', ')}) OVERRIDING SYSTEM VALUE VALUES ${tuples.join(', ')}`, values)
      }
      let batch: Array<Record<string, unknown>> = []
      for (const j of db.prepare('SELECT * FROM jobs ORDER BY id').iterate() as Iterable<Record<string, any>>) {
        const running = j.status === 'running'
        // A running job's worker was the old server's: what was asked of it is carried out here, as that server's
        // sweep would have — a cancel ends it canceled, a time limit failed — and anything else goes back to pending.
        const ended = running && (j.stop_request === 'cancel' || j.stop_request === 'timeout')
        if (running && !ended) counts.requeued++
        batch.push({
          ...j,
          status: !running ? j.status : j.stop_request === 'cancel' ? 'canceled' : j.stop_request === 'timeout' ? 'failed' : 'pending',
          error: running && j.stop_request === 'timeout' ? 'timeout' : j.error,
          // The attempt the old server's worker was using is given back, as a graceful stop does.
          attempts: running && !ended ? Math.max(0, j.attempts - 1) : j.attempts,
          created_at: ts(j.created_at),
          started_at: ts(j.started_at),
          finished_at: ts(ended ? Date.now() : j.finished_at),
          updated_at: ts(j.updated_at)
        })
        counts.jobs++
        if (batch.length === BATCH) { await insertJobs(batch); batch = [] }
      }
      await insertJobs(batch)

      for (const c of db.prepare(`SELECT c.* FROM checkpoints c JOIN jobs j ON j.id = c.job_id
        WHERE j.status = 'pending' OR (j.status = 'running' AND coalesce(j.stop_request, 'release') = 'release') ORDER BY c.job_id`).iterate() as Iterable<Record<string, any>>) {
        await pgc.query('INSERT INTO checkpoints (job_id, lease, step, state, saved_at) VALUES ($1, $2, $3, $4, $5)',
          [c.job_id, c.lease, c.step, c.state, ts(c.saved_at)])
        counts.checkpoints++
      }

      const eventCols = ['job_id', 'at', 'kind', 'attempt', 'lease', 'step', 'detail']
      let events: unknown[][] = []
      const insertEvents = async (): Promise<void> => {
        if (events.length === 0) return
        const values: unknown[] = []
        const tuples = events.map((e) => `(${e.map((v) => { values.push(v); return `$${values.length}` }).join(', ')})`)
        await pgc.query(`INSERT INTO job_events (${eventCols.join(', ')}) VALUES ${tuples.join(', ')}`, values)
        events = []
      }
      for (const e of db.prepare('SELECT * FROM job_events ORDER BY id').iterate() as Iterable<Record<string, any>>) {
        events.push([e.job_id, ts(e.at), e.kind, e.attempt, e.lease, e.step, e.detail])
        counts.events++
        if (events.length === BATCH) await insertEvents()
      }
      await insertEvents()

      // Matrices one at a time: each may be tens of MB.
      for (const m of db.prepare('SELECT * FROM matrices ORDER BY id').iterate() as Iterable<Record<string, any>>) {
        await pgc.query(`INSERT INTO matrices (id, name, rows, cols, sha256, bytes, created_at, job_id, corner, data)
          OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [m.id, m.name, m.rows, m.cols, m.sha256, m.bytes, ts(m.created_at), m.job_id, m.corner, m.data])
        counts.matrices++
      }

      // Past every id SQLite ever handed out, deleted ones included.
      const highest = (table: string): number => {
        const seq = db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').pluck().get(table) as number | undefined
        const max = db.prepare(`SELECT max(id) FROM ${table}`).pluck().get() as number | null
        return Math.max(seq ?? 0, max ?? 0)
      }
      for (const table of ['jobs', 'matrices']) {
        const top = highest(table)
        // Never backwards: ids this database handed out itself (then deleted) stay used too.
        if (top > 0) {
          await pgc.query(`SELECT setval(s::regclass, greatest($1::bigint, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ${table}_id_seq)))
            FROM pg_get_serial_sequence('${table}', 'id') AS s`, [top])
        }
        if (table === 'jobs') counts.nextJobId = top + 1
      }
      await pgc.query('COMMIT')
      return counts
    } catch (err) {
      await pgc.query('ROLLBACK').catch(() => { broken = true })
      throw err
    }
  } finally {
    if (db.inTransaction) db.exec('ROLLBACK')
    client?.release(broken)
    lock.release()
  }
}
