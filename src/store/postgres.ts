/**
 * The job store on PostgreSQL (`pg`), behind the asynchronous interface of src/store/job-store.ts. Schema in
 * migrations/postgres/ (applied by src/store/postgres-migrate.ts).
 *
 * - Claims: a CTE picks the next pending job `FOR UPDATE SKIP LOCKED`, the UPDATE raises its lease (the shape
 *   graphile-worker, pg-boss and Solid Queue use): claimers racing on several nodes never wait on each other and
 *   never get the same job for the same lease.
 * - Fencing: every worker write matches (id, lease, worker token, status 'running'), as on SQLite.
 * - Time: every timestamp is written with now() and every age (heartbeat, run time, stop grace) is measured
 *   against now(), the database's clock, never a node's. Rows are handed out with times as epoch ms, as on SQLite.
 * - Submits take a transaction-scoped advisory lock, so the MAX_PENDING check and the idempotency-key lookup
 *   hold across nodes (two nodes cannot both pass the check with the last free place).
 * - Change feed: see migrations/postgres/001_init.sql (job_changes). Event ids are "<xid>.<id>".
 * - History (migrations/postgres/002): every event is written in the transaction of the change it describes, as
 *   src/jobs/store.ts does on SQLite (`record`), so a fenced-out write adds none.
 */
import pg from 'pg'
import { ConflictError, NotFoundError, QueueFullError } from '../errors.js'
import type { JobEventDetail, JobEventKind, JobEventRow, StopRequester } from '../jobs/history.js'
import type { JobFilter } from '../jobs/job-filter.js'
import { retryOf, submitDifference } from '../jobs/store.js'
import { type Checkpoint, FINAL_STATUSES, JOB_STATUSES, type JobRow, type JobStatus, type NewJob, type StopRequest } from '../jobs/types.js'
import type { NewMatrix } from '../jobs/contract.js'
import { type Attempt, type AsyncJobStore, type BulkAction, type BulkBatch, type FeedChange, type Fenced, type LostOutcome, MAX_RESULT_MATRICES, type NodeRow, type RunningJob, type SubmitOptions, type Submitted, type Throughput } from './job-store.js'
import { insertMatrix } from './postgres-matrices.js'
import { pgCreatedIdsSql, pgFilterSql } from './postgres-filter.js'

/** Key of the advisory lock a submit holds for its transaction ('submit' in ASCII). */
const SUBMIT_LOCK_KEY = '126947999705460'

const FINAL = "('done', 'failed', 'canceled')"

/** A checkpoint is in the history if it is an attempt's first, or the last one there is this old (as on SQLite). */
const CHECKPOINT_EVENT_EVERY_MS = 60_000

/** A timestamptz column as epoch ms (a float8, which `pg` gives as a number). */
const ms = (expr: string, as: string): string => `floor(extract(epoch from ${expr}) * 1000)::float8 AS ${as}`

/** The columns of a JobRow, read from table alias `a`. */
const jobColumns = (a: string): string => [
  'id', 'type', 'name', 'params', 'priority', 'status', 'step', 'steps', 'progress', 'result', 'error', 'attempts',
  'lease', 'worker', 'pid', 'pid_start', 'node', 'lease_ms', 'lease_ms_lease'
].map((c) => `${a}.${c}`).concat([
  ms(`${a}.heartbeat_at`, 'heartbeat_at'), `${a}.stop_request`, ms(`${a}.stop_requested_at`, 'stop_requested_at'),
  `${a}.timeout_ms`, `${a}.idempotency_key`, `${a}.retry_of`, ms(`${a}.created_at`, 'created_at'),
  ms(`${a}.started_at`, 'started_at'), ms(`${a}.finished_at`, 'finished_at'), ms(`${a}.updated_at`, 'updated_at'),
  `${a}.seq`
]).join(', ')
const J = jobColumns('j')

type Raw = Record<string, unknown>
const num = (v: unknown): number => Number(v)
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))

/** A row as `pg` gives it (bigints as strings) → JobRow. */
function toRow (r: Raw): JobRow {
  return {
    ...(r as unknown as JobRow),
    id: num(r.id),
    pid_start: numOrNull(r.pid_start),
    timeout_ms: numOrNull(r.timeout_ms),
    retry_of: numOrNull(r.retry_of),
    seq: num(r.seq)
  }
}

/** Parses an event id "<xid>.<id>" into its two decimal parts, or undefined for anything else. */
function parseEventId (eventId: string): [string, string] | undefined {
  const m = /^(0|[1-9]\d{0,19})\.(0|[1-9]\d{0,18})$/.exec(eventId)
  // Within xid8 (unsigned 64 bits) and bigint (signed 64 bits): a larger number would make the cast throw.
  if (!m || BigInt(m[1]) > 0xffffffffffffffffn || BigInt(m[2]) > 0x7fffffffffffffffn) return undefined
  return [m[1], m[2]]
}

type Queryable = pg.Pool | pg.PoolClient

export interface PostgresJobStore extends AsyncJobStore {
  readonly kind: 'postgres'
  /** Deletes feed entries older than the newest `keep` that every reader can see; clients resuming from before
   *  them are told to reset. Returns how many were deleted. */
  pruneFeed (keep: number): Promise<number>
  /** The pool the store runs on. */
  readonly pool: pg.Pool
}

/** How long a new connection may take to be ready, and a caller may wait for a pool's free one. */
export const CONNECT_TIMEOUT_MS = 15_000

/** A pool for `connectionString`; a connection error on an idle client goes to `onError` instead of crashing. */
export function openPostgres (connectionString: string, options: { max?: number, onError?: (err: Error) => void, idleInTransactionMs?: number, connectTimeoutMs?: number } = {}): pg.Pool {
  // A process frozen (SIGSTOP, swapped out, a debugger) inside a transaction would hold its row locks for as long
  // as it stays frozen, and every node's takeover of that job would wait on them: PostgreSQL ends such a session
  // after idleInTransactionMs, which frees its locks and rolls its writes back.
  // TCP keepalive: a connection whose peer vanished (a network black hole) is noticed by the OS instead of leaving
  // a query waiting for ever; probes start after 10 s of silence instead of the OS's default two hours.
  // connectionTimeoutMillis: a connection that is not ready within it fails (a host that drops packets, or accepts
  // and never answers, would otherwise hold a node's start for minutes, far past DB_WAIT_SECONDS); it also bounds
  // how long a caller waits for a free connection of a busy pool.
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    idle_in_transaction_session_timeout: options.idleInTransactionMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS
  })
  const onError = options.onError ?? (() => {})
  pool.on('error', onError)
  // The pool listens for errors of idle clients only: a client checked out (inside tx()) whose connection drops
  // emits 'error' with no listener, which ends the process. Its queries reject with the error anyway.
  pool.on('connect', (client) => { client.on('error', onError) })
  return pool
}

/**
 * The store over a pool whose database is migrated (migratePostgres). `ownsPool`: close() ends the pool.
 */
export function createPostgresJobStore (pool: pg.Pool, { ownsPool = false } = {}): PostgresJobStore {
  const one = async (q: Queryable, text: string, values: unknown[] = []): Promise<JobRow | undefined> => {
    const { rows } = await q.query<Raw>(text, values)
    return rows.length ? toRow(rows[0]) : undefined
  }

  /** Runs `f` in a transaction on one connection; a connection left in an unknown state is closed, not reused. */
  const tx = async <T>(f: (c: pg.PoolClient) => Promise<T>): Promise<T> => {
    const c = await pool.connect()
    let broken: Error | undefined
    try {
      await c.query('BEGIN')
      const value = await f(c)
      await c.query('COMMIT')
      return value
    } catch (err) {
      await c.query('ROLLBACK').catch((e: Error) => { broken = e })
      throw err
    } finally {
      c.release(broken)
    }
  }

  const getById = (q: Queryable, id: number, lock = false): Promise<JobRow | undefined> =>
    one(q, `SELECT ${J} FROM jobs j WHERE j.id = $1${lock ? ' FOR UPDATE' : ''}`, [id])

  const fenceWhere = 'id = $1 AND lease = $2 AND worker = $3 AND status = \'running\''
  const fence = (a: Attempt): unknown[] => [a.id, a.lease, a.worker]
  const fenced = <T>(ok: boolean, value: T): Fenced<T> => (ok ? { ok: true, value } : { ok: false })

  /** Adds an event to a job's history, with the job's attempt, lease and step as they are now; call it inside the
   *  transaction of the change it describes (as `record` in src/jobs/store.ts). `attempt` overrides the count. */
  const record = async (q: Queryable, id: number, kind: JobEventKind, detail?: JobEventDetail, attempt: number | null = null): Promise<void> => {
    await q.query(`
      INSERT INTO job_events (job_id, at, kind, attempt, lease, step, detail)
      SELECT id, now(), $2, coalesce($3::integer, attempts), lease, step, $4 FROM jobs WHERE id = $1`,
    [id, kind, attempt, detail && Object.keys(detail).length > 0 ? JSON.stringify(detail) : null])
  }

  /** Step of the job's checkpoint, if any. */
  const checkpointStep = async (q: Queryable, id: number): Promise<number | undefined> => {
    const { rows } = await q.query<{ step: number }>('SELECT step FROM checkpoints WHERE job_id = $1', [id])
    return rows[0]?.step
  }
  /** The step the next attempt resumes from (0: from scratch). */
  const resumeStep = async (q: Queryable, id: number): Promise<number> => (await checkpointStep(q, id)) ?? 0

  /** Whether the attempt holds the job, locking its row until the transaction ends. */
  const holds = async (q: Queryable, attempt: Attempt): Promise<boolean> =>
    (await q.query(`SELECT 1 FROM jobs WHERE ${fenceWhere} FOR UPDATE`, fence(attempt))).rows.length === 1

  /** The 'done' event of an ended job: compute time and speed where the result reports them (as on SQLite), else
   *  the time since its first start by the database's clock. */
  const recordDone = async (q: Queryable, id: number, result: object): Promise<void> => {
    const { elapsedMs, gflops } = result as { elapsedMs?: unknown, gflops?: unknown }
    let elapsed = typeof elapsedMs === 'number' ? elapsedMs : undefined
    if (elapsed === undefined) {
      const { rows } = await q.query<{ e: number | null }>(
        'SELECT floor(extract(epoch from now() - started_at) * 1000)::float8 AS e FROM jobs WHERE id = $1', [id])
      elapsed = rows[0]?.e ?? undefined
    }
    await record(q, id, 'done', { elapsedMs: elapsed, gflops: typeof gflops === 'number' ? gflops : undefined })
  }

  /** Which statuses a filter selects, or null for any (none given, or all of them). */
  const statusesOf = (filter: JobFilter): JobStatus[] | null => {
    const set = new Set(filter.status ?? [])
    return set.size > 0 && set.size < JOB_STATUSES.length ? [...set] : null
  }

  /** Rows matching `filter` with ids below `cursor`, newest first, at most `limit`: `columns` of jobs `j`. */
  const matching = async (q: Queryable, filter: JobFilter, cursor: number, limit: number, columns: string): Promise<Raw[]> => {
    const params: unknown[] = [cursor, limit]
    const statuses = statusesOf(filter)
    const byStatus = statuses ? ` AND j.status = ANY($${params.push(statuses)}::text[])` : ''
    const where = pgFilterSql(filter, params)
    const { rows } = await q.query<Raw>(
      `SELECT ${columns} FROM jobs j WHERE j.id < $1${byStatus}${where} ORDER BY j.id DESC LIMIT $2`, params)
    return rows
  }

  /** A fenced update that ends the job (done, failed, canceled), deleting its checkpoint in the same statement. */
  const endJob = async (q: Queryable, attempt: Attempt, set: string, extra: unknown[]): Promise<boolean> => {
    const { rows } = await q.query<{ n: string }>(`
      WITH ended AS (
        UPDATE jobs SET ${set}, pid = NULL, pid_start = NULL, finished_at = now(), updated_at = now()
        WHERE ${fenceWhere} RETURNING id),
      dropped AS (DELETE FROM checkpoints c USING ended WHERE c.job_id = ended.id)
      SELECT count(*) AS n FROM ended`, [...fence(attempt), ...extra])
    return Number(rows[0].n) === 1
  }

  // A release is not the job's fault: the attempt it used is given back (the reason, if any, kept in error).
  const release = async (q: Queryable, attempt: Attempt, error: string | null): Promise<boolean> => {
    const { rowCount } = await q.query(`
      UPDATE jobs SET status = 'pending', attempts = greatest(attempts - 1, 0), error = coalesce($4, error), worker = NULL,
        pid = NULL, pid_start = NULL, stop_request = NULL, stop_requested_at = NULL, heartbeat_at = NULL, updated_at = now()
      WHERE ${fenceWhere}`, [...fence(attempt), error])
    return rowCount === 1
  }

  /** Applies what a stop request means once the worker has stopped, fenced on its attempt; `why` goes in the
   *  history. */
  const settleStop = (attempt: Attempt, request: StopRequest, why?: string): Promise<boolean> => tx(async (c) => {
    if (request === 'release') {
      if (!await holds(c, attempt)) return false
      await record(c, attempt.id, 'released', { reason: why ?? 'asked to release', resumesFromStep: await resumeStep(c, attempt.id) })
      return release(c, attempt, null)
    }
    const ended = request === 'cancel'
      ? await endJob(c, attempt, "status = 'canceled'", [])
      : await endJob(c, attempt, "status = 'failed', error = 'timeout'", [])
    if (ended) await record(c, attempt.id, request === 'cancel' ? 'canceled' : 'failed', request === 'cancel' ? {} : { reason: 'timeout' })
    return ended
  })

  const DONE = "status = 'done', result = $4, error = NULL, step = steps, progress = 100, stop_request = NULL"

  const beatSql = `
    UPDATE jobs SET pid = coalesce($4::integer, pid), pid_start = coalesce($5::bigint, pid_start), step = $6, progress = $7,
      heartbeat_at = now(), updated_at = now()
    WHERE ${fenceWhere}
    RETURNING stop_request`

  const submitIn = async (c: pg.PoolClient, job: NewJob, maxPending: number, options: SubmitOptions): Promise<Submitted> => {
    await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [SUBMIT_LOCK_KEY])
    if (job.idempotencyKey !== null) {
      const existing = await one(c, `SELECT ${J} FROM jobs j WHERE j.idempotency_key = $1`, [job.idempotencyKey])
      if (existing) {
        const differs = submitDifference(existing, job, options)
        if (differs !== null) {
          throw new ConflictError(`Idempotency-Key "${job.idempotencyKey}" was already used for job ${existing.id} with a different request (${differs} differs); use a new key for a new job`)
        }
        return { row: existing, created: false }
      }
    }
    const { rows } = await c.query<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE status = 'pending'")
    const pending = Number(rows[0].n)
    if (pending >= maxPending) {
      throw new QueueFullError(`the queue is full: ${pending} jobs are pending (MAX_PENDING=${maxPending}); retry later`, 5)
    }
    return { row: await insertJob(c, job), created: true }
  }

  /** Inserts a pending job and its 'submitted' event; inside a transaction holding the submit lock. */
  const insertJob = async (c: pg.PoolClient, job: NewJob): Promise<JobRow> => {
    const row = await one(c, `
      INSERT INTO jobs AS j (type, name, params, priority, steps, timeout_ms, idempotency_key, retry_of)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${J}`,
    [job.type, job.name, JSON.stringify(job.params), job.priority, job.steps, job.timeoutMs, job.idempotencyKey, job.retryOf]) as JobRow
    await record(c, row.id, 'submitted', job.retryOf === null ? undefined : { retryOf: job.retryOf })
    return row
  }

  /** Cancels a pending job (with the checkpoint a released attempt left) and records who did. */
  const cancelPending = async (c: pg.PoolClient, id: number, by: StopRequester): Promise<void> => {
    await c.query("UPDATE jobs SET status = 'canceled', finished_at = now(), updated_at = now() WHERE id = $1 AND status = 'pending'", [id])
    await c.query('DELETE FROM checkpoints WHERE job_id = $1', [id])
    await record(c, id, 'canceled', { by })
  }

  /** Asks the worker of a running job to stop, with the request in the history; false if it is not running, or a
   *  cancel or timeout is already pending. */
  const askStop = async (c: pg.PoolClient, id: number, request: StopRequest, by: StopRequester): Promise<boolean> => {
    const { rowCount } = await c.query(`
      UPDATE jobs SET stop_request = $2, stop_requested_at = now(), updated_at = now()
      WHERE id = $1 AND status = 'running' AND (stop_request IS NULL OR stop_request = 'release')`, [id, request])
    if (rowCount !== 1) return false
    await record(c, id, 'stop-requested', { request, by })
    return true
  }

  /** One job of a bulk action, inside its batch's transaction with its row locked: what was done (null), or why
   *  it was skipped, in the words of src/jobs/store.ts. */
  const bulkOne = async (c: pg.PoolClient, row: JobRow, action: BulkAction, room: { pending: number, max: number }): Promise<string | null> => {
    const { id, status } = row
    if (action === 'cancel') {
      if (FINAL_STATUSES.includes(status)) return `already ${status}`
      if (status === 'pending') {
        await cancelPending(c, id, 'bulk')
        return null
      }
      if (row.stop_request === 'cancel' || row.stop_request === 'timeout') return `already asked to stop (${row.stop_request})`
      await askStop(c, id, 'cancel', 'bulk')
      return null
    }
    if (action === 'delete') {
      if (!FINAL_STATUSES.includes(status)) return `${status}: only finished jobs can be deleted (cancel it first)`
      // Checkpoints and history go with the job (ON DELETE CASCADE).
      await c.query(`DELETE FROM jobs WHERE id = $1 AND status IN ${FINAL}`, [id])
      return null
    }
    if (status !== 'failed' && status !== 'canceled') return `${status}: only failed or canceled jobs can be retried`
    const { rows } = await c.query<{ id: string }>('SELECT id FROM jobs WHERE retry_of = $1 ORDER BY id LIMIT 1', [id])
    if (rows.length > 0) return `already retried as job ${rows[0].id}`
    if (room.pending >= room.max) return `the queue is full: ${room.pending} jobs are pending (MAX_PENDING=${room.max})`
    await insertJob(c, retryOf(row))
    room.pending++
    return null
  }

  return {
    kind: 'postgres',
    pool,

    // ---- API side -----------------------------------------------------------------------------------------
    submit: (job, maxPending, options = {}) => tx((c) => submitIn(c, job, maxPending, options)),

    get: (id) => getById(pool, id),

    async list (options) {
      // As on SQLite: a filter, or else the one status of the older form.
      const filter: JobFilter = options.filter ?? (options.status ? { status: [options.status] } : {})
      const jobs = (await matching(pool, filter, options.cursor ?? Number.MAX_SAFE_INTEGER, options.limit + 1, J)).map(toRow)
      const more = jobs.length > options.limit
      if (more) jobs.pop()
      return { jobs, nextCursor: more ? jobs[jobs.length - 1].id : null }
    },

    // With a filter: of the jobs it matches apart from its statuses (as on SQLite), so a page can show what each
    // status holds under the other conditions.
    async counts (filter) {
      const out: Record<JobStatus, number> = { pending: 0, running: 0, done: 0, failed: 0, canceled: 0 }
      const params: unknown[] = []
      const where = filter ? pgFilterSql(filter, params) : ''
      const { rows } = await pool.query<{ status: JobStatus, n: string }>(
        `SELECT status, count(*) AS n FROM jobs WHERE true${where} GROUP BY status`, params)
      for (const { status, n } of rows) out[status] = Number(n)
      return out
    },

    async events (id) {
      const { rows } = await pool.query<Raw>(`
        SELECT id, job_id, ${ms('at', 'at')}, kind, attempt, lease, step, detail FROM job_events WHERE job_id = $1 ORDER BY id`, [id])
      return rows.map((r): JobEventRow => ({ ...(r as unknown as JobEventRow), id: num(r.id), job_id: num(r.job_id) }))
    },

    async resolveCreated (filter) {
      if (filter.createdFrom === undefined && filter.createdTo === undefined) return filter
      const params: unknown[] = []
      const { rows } = await pool.query<{ min: string | null, max: string | null }>(pgCreatedIdsSql(filter, params), params)
      return { ...filter, createdIds: { min: Number(rows[0].min ?? 0), max: Number(rows[0].max ?? 0) } }
    },

    bulkBatch: (action, filter, cursor, batch, maxPending) => tx(async (c): Promise<BulkBatch> => {
      // A retry holds the submit lock: the room in the queue and "already retried" hold until it commits, on every node.
      if (action === 'retry') await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [SUBMIT_LOCK_KEY])
      // The batch is the ids matching now (the cursor moves past them whatever happens to them); each is then
      // locked and read again, so a job changed meanwhile is judged as it is.
      const ids = (await matching(c, filter, cursor === 0 ? Number.MAX_SAFE_INTEGER : cursor, batch, 'j.id')).map((r) => num(r.id))
      const out: BulkBatch = { matched: ids.length, changed: 0, skipped: [], cursor: ids.length < batch ? null : ids[ids.length - 1] }
      if (ids.length === 0) return out
      const { rows } = await c.query<Raw>(`SELECT ${J} FROM jobs j WHERE j.id = ANY($1::bigint[]) ORDER BY j.id DESC FOR UPDATE`, [ids])
      const room = { pending: 0, max: maxPending }
      if (action === 'retry') {
        const { rows: n } = await c.query<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE status = 'pending'")
        room.pending = Number(n[0].n)
      }
      for (const row of rows.map(toRow)) {
        const skipped = await bulkOne(c, row, action, room)
        if (skipped === null) out.changed++
        else out.skipped.push({ id: row.id, reason: skipped })
      }
      return out
    }),

    // Whole minutes by the database's clock, so every node draws the same chart.
    throughput: (minutes) => tx(async (c): Promise<Throughput> => {
      const { rows: head } = await c.query<{ from: number, pending: string, running: string }>(`
        SELECT ((floor(extract(epoch from now()) / 60) - $1 + 1) * 60000)::float8 AS from,
          (SELECT count(*) FROM jobs WHERE status = 'pending') AS pending,
          (SELECT count(*) FROM jobs WHERE status = 'running') AS running`, [minutes])
      const from = Number(head[0].from)
      const out = Array.from({ length: minutes }, (_, i) => ({ at: from + i * 60_000, done: 0, failed: 0 }))
      const { rows } = await c.query<{ minute: number, status: JobStatus, n: string }>(`
        SELECT floor((floor(extract(epoch from finished_at) * 1000) - $1) / 60000)::integer AS minute, status, count(*) AS n
        FROM jobs WHERE finished_at >= to_timestamp($1::float8 / 1000) AND status IN ('done', 'failed')
        GROUP BY 1, 2`, [from])
      for (const { minute, status, n } of rows) {
        const slot = out[minute]
        if (slot && (status === 'done' || status === 'failed')) slot[status] = Number(n)
      }
      return { from, minutes: out, pending: Number(head[0].pending), running: Number(head[0].running) }
    }),

    cancel: (id) => tx(async (c) => {
      const row = await getById(c, id, true)
      if (!row) throw new NotFoundError(`job ${id} not found`)
      if (row.status === 'pending') {
        await cancelPending(c, id, 'api')
      } else if (row.status === 'running') {
        await askStop(c, id, 'cancel', 'api')
      } else throw new ConflictError(`job ${id} is already ${row.status}`)
      return await getById(c, id) as JobRow
    }),

    remove: (id) => tx(async (c) => {
      const row = await getById(c, id, true)
      if (!row) throw new NotFoundError(`job ${id} not found`)
      const { rowCount } = await c.query(`DELETE FROM jobs WHERE id = $1 AND status IN ${FINAL}`, [id])
      if (rowCount !== 1) throw new ConflictError(`job ${id} is ${row.status}; only finished jobs can be deleted`)
    }),

    async retry (id, maxPending) {
      const row = await getById(pool, id)
      if (!row) throw new NotFoundError(`job ${id} not found`)
      if (row.status !== 'failed' && row.status !== 'canceled') {
        throw new ConflictError(`job ${id} is ${row.status}; only failed or canceled jobs can be retried`)
      }
      const { row: created } = await tx((c) => submitIn(c, retryOf(row), maxPending, {}))
      return created
    },

    // ---- change feed ---------------------------------------------------------------------------------------
    async changesAfter (eventId, limit = 500) {
      const cursor = eventId === null ? ['0', '0'] : parseEventId(eventId)
      if (!cursor) throw new TypeError(`not an event id of this store: ${JSON.stringify(eventId)}`)
      // One statement, one snapshot: every entry below its xmin belongs to a transaction that has ended, and the
      // rows joined are seen as of the same snapshot, so at least as new as every entry read.
      const { rows } = await pool.query<Raw & { c_xid: string, c_id: string, c_job: string, c_deleted: boolean, present: boolean }>(`
        SELECT c.xid::text AS c_xid, c.id AS c_id, c.job_id AS c_job, c.deleted AS c_deleted, j.id IS NOT NULL AS present, ${J}
        FROM (SELECT xid, id, job_id, deleted FROM job_changes
              WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) AND (xid, id) > ($1::xid8, $2::bigint)
              ORDER BY xid, id LIMIT $3) c
        LEFT JOIN jobs j ON j.id = c.job_id AND NOT c.deleted
        ORDER BY c.xid, c.id`, [cursor[0], cursor[1], limit])
      // Within the page a job is given once, at its last entry (so the page's last entry is always given and the
      // cursor always moves on). An entry whose job is gone by now is given as the job's tombstone: transaction
      // ids follow the order transactions first wrote, not the order they committed, so a deletion can come
      // before a change it followed; a second tombstone for a job already deleted is harmless.
      const last = new Map<string, number>()
      rows.forEach((r, i) => last.set(r.c_job, i))
      const out: FeedChange[] = []
      rows.forEach((r, i) => {
        if (last.get(r.c_job) !== i) return
        const id = `${r.c_xid}.${r.c_id}`
        const { c_xid: _x, c_id: _i, c_job: job, c_deleted: _d, present, ...row } = r
        out.push(present ? { eventId: id, row: toRow(row) } : { eventId: id, deleted: Number(job) })
      })
      return out
    },

    async feedHead () {
      const { rows } = await pool.query<{ x: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x')
      return `${rows[0].x}.0`
    },

    async canResume (eventId, maxReplay) {
      const cursor = parseEventId(eventId)
      if (!cursor) return false
      const { rows } = await pool.query<{ ok: boolean }>(`
        SELECT ($1::xid8, $2::bigint) >= (p.xid, p.id)
          AND $1::xid8 <= pg_snapshot_xmax(pg_current_snapshot())
          AND (SELECT count(*) FROM (SELECT 1 FROM job_changes WHERE (xid, id) > ($1::xid8, $2::bigint) LIMIT $3) x) <= $4 AS ok
        FROM job_changes_pruned p`, [cursor[0], cursor[1], maxReplay + 1, maxReplay])
      return rows[0].ok
    },

    // ---- scheduler side ----------------------------------------------------------------------------------
    // One statement: the claim and its 'claimed' event commit together.
    claimNext: (worker, pid, node, leaseMs) => one(pool, `
      WITH next AS (
        SELECT id FROM jobs WHERE status = 'pending' ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED),
      claimed AS (
        UPDATE jobs j SET status = 'running', lease = j.lease + 1, attempts = j.attempts + 1, worker = $1, node = $2,
          lease_ms = $4, lease_ms_lease = j.lease + 1, pid = NULL, pid_start = NULL, heartbeat_at = now(), stop_request = NULL, stop_requested_at = NULL,
          started_at = coalesce(j.started_at, now()), updated_at = now()
        FROM next WHERE j.id = next.id AND j.status = 'pending'
        RETURNING ${J}),
      event AS (
        INSERT INTO job_events (job_id, at, kind, attempt, lease, step, detail)
        SELECT id, now(), 'claimed', attempts, lease, step, $3 FROM claimed)
      SELECT * FROM claimed`, [worker, node ?? null, JSON.stringify({ pid: pid ?? null }), leaseMs ?? null]),

    async running () {
      const { rows } = await pool.query<Raw>(`SELECT ${J} FROM jobs j WHERE j.status = 'running' ORDER BY j.id`)
      return rows.map(toRow)
    },

    async runningWithAges () {
      const { rows } = await pool.query<Raw>(`
        SELECT ${J},
          floor(extract(epoch from now() - j.heartbeat_at) * 1000)::float8 AS age_silent,
          floor(extract(epoch from now() - j.started_at) * 1000)::float8 AS age_run,
          CASE WHEN j.stop_request IS NULL THEN NULL
            ELSE floor(extract(epoch from now() - j.stop_requested_at) * 1000)::float8 END AS age_stop
        FROM jobs j WHERE j.status = 'running' ORDER BY j.id`)
      return rows.map((r): RunningJob => {
        const { age_silent: silent, age_run: run, age_stop: stop, ...rest } = r
        const age = (v: unknown): number | null => (v === null ? null : Math.max(0, Number(v)))
        return { row: toRow(rest), silentMs: age(silent), runMs: age(run), stopWaitMs: age(stop) }
      })
    },

    async hasPending () {
      const { rows } = await pool.query("SELECT 1 FROM jobs WHERE status = 'pending' LIMIT 1")
      return rows.length > 0
    },

    requestStop: (id, request, by = 'scheduler') => tx((c) => askStop(c, id, request, by)),

    settleStop: (attempt, request, why) => settleStop(attempt, request, why),

    markLost: (attempt, reason, maxAttempts, ifSilentForMs) => tx(async (c): Promise<LostOutcome> => {
      const { rows } = await c.query<{ attempts: number, silent: boolean }>(`
        SELECT attempts, ($4::float8 IS NULL OR heartbeat_at IS NULL OR heartbeat_at < now() - $4::float8 * interval '1 millisecond') AS silent
        FROM jobs WHERE ${fenceWhere} FOR UPDATE`, [...fence(attempt), ifSilentForMs ?? null])
      if (rows.length === 0) return 'gone'
      if (!rows[0].silent) return 'alive'
      const attempts = rows[0].attempts
      if (attempts >= maxAttempts) {
        await record(c, attempt.id, 'lost', { reason, resumesFromStep: null })
        const error = `${reason} (attempt ${attempts} of ${maxAttempts})`
        await endJob(c, attempt, "status = 'failed', error = $4", [error])
        await record(c, attempt.id, 'failed', { reason: error })
        return 'failed'
      }
      await record(c, attempt.id, 'lost', { reason, resumesFromStep: await resumeStep(c, attempt.id) })
      await c.query(`
        UPDATE jobs SET status = 'pending', error = $4, worker = NULL, pid = NULL, pid_start = NULL, heartbeat_at = NULL,
          stop_request = NULL, stop_requested_at = NULL, updated_at = now()
        WHERE ${fenceWhere}`, [...fence(attempt), reason])
      return 'requeued'
    }),

    giveBack: (attempt, reason) => tx(async (c) => {
      if (!await holds(c, attempt)) return false
      await record(c, attempt.id, 'released', { reason, resumesFromStep: await resumeStep(c, attempt.id) })
      return release(c, attempt, reason)
    }),

    async checkpointInfo (id) {
      const { rows } = await pool.query<{ step: number, saved_at: number }>(
        `SELECT step, ${ms('saved_at', 'saved_at')} FROM checkpoints WHERE job_id = $1`, [id])
      return rows[0]
    },

    // ---- worker side ----------------------------------------------------------------------------------------
    assigned: (worker) => one(pool, `SELECT ${J} FROM jobs j WHERE j.worker = $1 AND j.status = 'running'`, [worker]),

    async loadCheckpoint (id): Promise<Checkpoint | undefined> {
      const { rows } = await pool.query<{ step: number, state: Buffer }>('SELECT step, state FROM checkpoints WHERE job_id = $1', [id])
      return rows[0]
    },

    // The first write of a worker: its heartbeat with its pid and, unless a stop is already asked for, 'started'
    // with the step of the checkpoint it resumes from.
    begin: (attempt, progress) => tx(async (c): Promise<Fenced<StopRequest | null>> => {
      const { rows } = await c.query<{ stop_request: StopRequest | null }>(beatSql,
        [...fence(attempt), progress.pid, progress.pidStart ?? null, progress.step, progress.progress])
      if (rows.length !== 1) return { ok: false }
      if (!rows[0].stop_request) {
        await record(c, attempt.id, 'started', { pid: progress.pid, resumedFromStep: (await checkpointStep(c, attempt.id)) ?? null })
      }
      return { ok: true, value: rows[0].stop_request }
    }),

    async beat (attempt, progress) {
      const { rows } = await pool.query<{ stop_request: StopRequest | null }>(beatSql,
        [...fence(attempt), progress.pid ?? null, progress.pidStart ?? null, progress.step, progress.progress])
      return rows.length === 1 ? { ok: true, value: rows[0].stop_request } : { ok: false }
    },

    saveCheckpoint: (attempt, checkpoint, progress) => tx(async (c): Promise<Fenced<StopRequest | null>> => {
      const { rows } = await c.query<{ stop_request: StopRequest | null }>(beatSql,
        [...fence(attempt), null, null, checkpoint.step, progress])
      if (rows.length !== 1) return { ok: false }
      await c.query(`
        INSERT INTO checkpoints (job_id, lease, step, state, saved_at) VALUES ($1, $2, $3, $4, now())
        ON CONFLICT (job_id) DO UPDATE SET lease = excluded.lease, step = excluded.step, state = excluded.state,
          saved_at = excluded.saved_at`, [attempt.id, attempt.lease, checkpoint.step, checkpoint.state])
      // In the history: an attempt's first checkpoint, then at most one a minute.
      await c.query(`
        INSERT INTO job_events (job_id, at, kind, attempt, lease, step)
        SELECT id, now(), 'checkpoint', attempts, lease, step FROM jobs j WHERE j.id = $1 AND NOT EXISTS (
          SELECT 1 FROM (SELECT at, lease FROM job_events WHERE job_id = $1 AND kind = 'checkpoint' ORDER BY id DESC LIMIT 1) l
          WHERE l.lease = j.lease AND l.at > now() - $2::float8 * interval '1 millisecond')`, [attempt.id, CHECKPOINT_EVENT_EVERY_MS])
      return { ok: true, value: rows[0].stop_request }
    }),

    complete: (attempt, result) => tx(async (c) => {
      const ended = await endJob(c, attempt, DONE, [JSON.stringify(result)])
      if (ended) await recordDone(c, attempt.id, result)
      return fenced(ended, undefined)
    }),

    // result() runs outside any transaction: it is the job's own code and may take long, and a session left idle
    // inside a transaction for half a lease is ended by PostgreSQL (idle_in_transaction_session_timeout), so a slow
    // result() inside the ending transaction would fail every try alike and the job would never end. The ids it
    // hands out are taken from the identity's sequence first, in the query that checks the attempt still holds the
    // job (nextval is not transactional: ids not used are skipped for good, as ids of deleted matrices are); the
    // transaction then re-checks the fence under a row lock, inserts the matrices and ends the job, all or nothing.
    completeWith: async (attempt, build): Promise<Fenced<object>> => {
      const { rows: ids } = await pool.query<{ id: string }>(`
        SELECT nextval(pg_get_serial_sequence('matrices', 'id')) AS id FROM generate_series(1, $4)
        WHERE EXISTS (SELECT 1 FROM jobs WHERE ${fenceWhere})`, [...fence(attempt), MAX_RESULT_MATRICES])
      if (ids.length === 0) return { ok: false }
      const outputs: Array<{ id: number, m: NewMatrix }> = []
      const value = build({
        storeMatrix: (m) => {
          if (outputs.length >= ids.length) throw new Error(`a result stores at most ${MAX_RESULT_MATRICES} matrices`)
          const id = Number(ids[outputs.length].id)
          outputs.push({ id, m })
          return id
        }
      })
      return tx(async (c): Promise<Fenced<object>> => {
        const { rows: still } = await c.query(`SELECT 1 FROM jobs WHERE ${fenceWhere} FOR UPDATE`, fence(attempt))
        if (still.length === 0) return { ok: false }
        for (const { id, m } of outputs) await insertMatrix(c, m, attempt.id, id)
        const ended = await endJob(c, attempt, DONE, [JSON.stringify(value)])
        if (!ended) throw new Error(`job ${attempt.id} changed while locked`)
        await recordDone(c, attempt.id, value)
        return { ok: true, value }
      })
    },

    fail: (attempt, error) => tx(async (c) => {
      const ended = await endJob(c, attempt, "status = 'failed', error = $4", [error])
      if (ended) await record(c, attempt.id, 'failed', { reason: error })
      return fenced(ended, undefined)
    }),

    stopped: async (attempt, request) => fenced(await settleStop(attempt, request,
      request === 'release' ? 'the worker checkpointed and gave it back' : undefined), undefined),

    // ---- operations --------------------------------------------------------------------------------------
    async purgeFinishedBefore (before, batch = 1000) {
      let total = 0
      for (;;) {
        // Checkpoints (and result matrices) go with their job (ON DELETE CASCADE).
        const { rowCount } = await pool.query(`
          DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
            WHERE status IN ${FINAL} AND finished_at < to_timestamp($1::float8 / 1000) ORDER BY id LIMIT $2)`, [before, batch])
        total += rowCount ?? 0
        if ((rowCount ?? 0) < batch) return total
      }
    },

    pruneFeed: (keep) => tx(async (c) => {
      // The boundary: the newest entry that has `keep` newer ones, among those every reader can already see.
      const { rows } = await c.query<{ xid: string, id: string }>(`
        SELECT xid::text AS xid, id FROM job_changes WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY xid DESC, id DESC OFFSET $1 LIMIT 1`, [keep])
      if (rows.length === 0) return 0
      const { xid, id } = rows[0]
      const { rowCount } = await c.query('DELETE FROM job_changes WHERE (xid, id) <= ($1::xid8, $2::bigint)', [xid, id])
      await c.query('UPDATE job_changes_pruned SET xid = $1::xid8, id = $2::bigint WHERE (xid, id) < ($1::xid8, $2::bigint)', [xid, id])
      return rowCount ?? 0
    }),

    // One caller per interval across every node: the conflicting insert locks the slot's row, and a caller that
    // waited on it re-checks the WHERE against the last_at the winner wrote (READ COMMITTED), so it finds the
    // interval not yet passed.
    async claimPeriodic (name, intervalMs) {
      const { rowCount } = await pool.query(`
        INSERT INTO periodic AS p (name, last_at) VALUES ($1, now())
        ON CONFLICT (name) DO UPDATE SET last_at = excluded.last_at
        WHERE p.last_at <= now() - $2::float8 * interval '1 millisecond'`, [name, intervalMs])
      return rowCount === 1
    },

    // ---- nodes -------------------------------------------------------------------------------------------------
    async registerNode (node) {
      await pool.query(`
        INSERT INTO nodes (node_id, boot_id, pid, host, lease_ms, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, now(), now())
        ON CONFLICT (node_id) DO UPDATE SET boot_id = excluded.boot_id, pid = excluded.pid, host = excluded.host,
          lease_ms = excluded.lease_ms, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
      [node.node_id, node.boot_id, node.pid, node.host, node.lease_ms ?? null])
    },

    async beatNode (nodeId, pid) {
      const { rowCount } = await pool.query('UPDATE nodes SET heartbeat_at = now() WHERE node_id = $1 AND pid = $2', [nodeId, pid])
      return rowCount === 1
    },

    async nodes () {
      const { rows } = await pool.query<Raw>(`
        SELECT n.node_id, n.boot_id, n.pid, n.host, n.lease_ms, ${ms('n.started_at', 'started_at')}, ${ms('n.heartbeat_at', 'heartbeat_at')},
          greatest(0, floor(extract(epoch from now() - n.heartbeat_at) * 1000))::float8 AS silent_ms,
          (SELECT count(*) FROM jobs j WHERE j.status = 'running' AND j.node = n.node_id) AS running
        FROM nodes n ORDER BY n.heartbeat_at DESC, n.node_id`)
      return rows.map((r): NodeRow => ({ ...(r as unknown as NodeRow), running: num(r.running) }))
    },

    async leaveNode (nodeId, pid) {
      await pool.query('DELETE FROM nodes WHERE node_id = $1 AND pid = $2', [nodeId, pid])
    },

    async forgetNodes (silentForMs) {
      const { rowCount } = await pool.query(`
        DELETE FROM nodes n WHERE n.heartbeat_at < now() - make_interval(secs => $1::double precision / 1000)
          AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.status = 'running' AND j.node = n.node_id)`, [silentForMs])
      return rowCount ?? 0
    },

    close: async () => {
      if (ownsPool) await pool.end()
    }
  }
}
