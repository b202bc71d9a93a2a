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
 */
import pg from 'pg'
import { ConflictError, NotFoundError, QueueFullError } from '../errors.js'
import { retryOf, submitDifference } from '../jobs/store.js'
import type { Checkpoint, JobRow, JobStatus, NewJob, StopRequest } from '../jobs/types.js'
import type { NewMatrix } from '../jobs/contract.js'
import { type Attempt, type AsyncJobStore, type FeedChange, type Fenced, type LostOutcome, MAX_RESULT_MATRICES, type RunningJob, type SubmitOptions, type Submitted } from './job-store.js'
import { insertMatrix } from './postgres-matrices.js'

/** Key of the advisory lock a submit holds for its transaction ('submit' in ASCII). */
const SUBMIT_LOCK_KEY = '126947999705460'

const FINAL = "('done', 'failed', 'canceled')"

/** A timestamptz column as epoch ms (a float8, which `pg` gives as a number). */
const ms = (expr: string, as: string): string => `floor(extract(epoch from ${expr}) * 1000)::float8 AS ${as}`

/** The columns of a JobRow, read from table alias `a`. */
const jobColumns = (a: string): string => [
  'id', 'type', 'name', 'params', 'priority', 'status', 'step', 'steps', 'progress', 'result', 'error', 'attempts',
  'lease', 'worker', 'pid', 'pid_start'
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
  return m ? [m[1], m[2]] : undefined
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

/** A pool for `connectionString`; a connection error on an idle client goes to `onError` instead of crashing. */
export function openPostgres (connectionString: string, options: { max?: number, onError?: (err: Error) => void } = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString, max: options.max ?? 10 })
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

  const settleStop = async (q: Queryable, attempt: Attempt, request: StopRequest): Promise<boolean> => {
    if (request === 'release') return release(q, attempt, null)
    if (request === 'cancel') return endJob(q, attempt, "status = 'canceled'", [])
    return endJob(q, attempt, "status = 'failed', error = 'timeout'", [])
  }

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
    const row = await one(c, `
      INSERT INTO jobs AS j (type, name, params, priority, steps, timeout_ms, idempotency_key, retry_of)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${J}`,
    [job.type, job.name, JSON.stringify(job.params), job.priority, job.steps, job.timeoutMs, job.idempotencyKey, job.retryOf])
    return { row: row as JobRow, created: true }
  }

  const notYet = async (): Promise<never> => { throw new Error('not yet on PostgreSQL') }
  return {
    kind: 'postgres',
    pool,

    // ---- API side -----------------------------------------------------------------------------------------
    submit: (job, maxPending, options = {}) => tx((c) => submitIn(c, job, maxPending, options)),

    get: (id) => getById(pool, id),

    async list (options) {
      const cursor = options.cursor ?? Number.MAX_SAFE_INTEGER
      const limit = options.limit + 1
      const { rows } = options.status
        ? await pool.query<Raw>(`SELECT ${J} FROM jobs j WHERE j.status = $1 AND j.id < $2 ORDER BY j.id DESC LIMIT $3`, [options.status, cursor, limit])
        : await pool.query<Raw>(`SELECT ${J} FROM jobs j WHERE j.id < $1 ORDER BY j.id DESC LIMIT $2`, [cursor, limit])
      const jobs = rows.map(toRow)
      const more = jobs.length > options.limit
      if (more) jobs.pop()
      return { jobs, nextCursor: more ? jobs[jobs.length - 1].id : null }
    },

    async counts () {
      const out: Record<JobStatus, number> = { pending: 0, running: 0, done: 0, failed: 0, canceled: 0 }
      const { rows } = await pool.query<{ status: JobStatus, n: string }>('SELECT status, count(*) AS n FROM jobs GROUP BY status')
      for (const { status, n } of rows) out[status] = Number(n)
      return out
    },

    cancel: (id) => tx(async (c) => {
      const row = await getById(c, id, true)
      if (!row) throw new NotFoundError(`job ${id} not found`)
      if (row.status === 'pending') {
        await c.query("UPDATE jobs SET status = 'canceled', finished_at = now(), updated_at = now() WHERE id = $1", [id])
        await c.query('DELETE FROM checkpoints WHERE job_id = $1', [id])
      } else if (row.status === 'running') {
        await c.query(`UPDATE jobs SET stop_request = 'cancel', stop_requested_at = now(), updated_at = now()
          WHERE id = $1 AND (stop_request IS NULL OR stop_request = 'release')`, [id])
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
    claimNext: (worker) => one(pool, `
      WITH next AS (
        SELECT id FROM jobs WHERE status = 'pending' ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)
      UPDATE jobs j SET status = 'running', lease = j.lease + 1, attempts = j.attempts + 1, worker = $1, pid = NULL,
        pid_start = NULL, heartbeat_at = now(), stop_request = NULL, stop_requested_at = NULL,
        started_at = coalesce(j.started_at, now()), updated_at = now()
      FROM next WHERE j.id = next.id AND j.status = 'pending'
      RETURNING ${J}`, [worker]),

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

    async requestStop (id, request) {
      const { rowCount } = await pool.query(`
        UPDATE jobs SET stop_request = $2, stop_requested_at = now(), updated_at = now()
        WHERE id = $1 AND status = 'running' AND (stop_request IS NULL OR stop_request = 'release')`, [id, request])
      return rowCount === 1
    },

    settleStop: (attempt, request) => settleStop(pool, attempt, request),

    markLost: (attempt, reason, maxAttempts, ifSilentForMs) => tx(async (c): Promise<LostOutcome> => {
      const { rows } = await c.query<{ attempts: number, silent: boolean }>(`
        SELECT attempts, ($4::float8 IS NULL OR heartbeat_at IS NULL OR heartbeat_at < now() - $4::float8 * interval '1 millisecond') AS silent
        FROM jobs WHERE ${fenceWhere} FOR UPDATE`, [...fence(attempt), ifSilentForMs ?? null])
      if (rows.length === 0) return 'gone'
      if (!rows[0].silent) return 'alive'
      const attempts = rows[0].attempts
      if (attempts >= maxAttempts) {
        await endJob(c, attempt, "status = 'failed', error = $4", [`${reason} (attempt ${attempts} of ${maxAttempts})`])
        return 'failed'
      }
      await c.query(`
        UPDATE jobs SET status = 'pending', error = $4, worker = NULL, pid = NULL, pid_start = NULL, heartbeat_at = NULL,
          stop_request = NULL, stop_requested_at = NULL, updated_at = now()
        WHERE ${fenceWhere}`, [...fence(attempt), reason])
      return 'requeued'
    }),

    giveBack: (attempt, reason) => release(pool, attempt, reason),

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
      return { ok: true, value: rows[0].stop_request }
    }),

    complete: async (attempt, result) => fenced(await endJob(pool, attempt,
      "status = 'done', result = $4, error = NULL, step = steps, progress = 100, stop_request = NULL", [JSON.stringify(result)]), undefined),

    completeWith: (attempt, build) => tx(async (c): Promise<Fenced<object>> => {
      const { rows: held } = await c.query(`SELECT 1 FROM jobs WHERE ${fenceWhere} FOR UPDATE`, fence(attempt))
      if (held.length === 0) return { ok: false }
      // result() is synchronous and hands out matrix ids as it stores: they are taken from the identity's sequence
      // first (ids not used are skipped for good, as ids of deleted matrices are), the rows inserted after it.
      const { rows: ids } = await c.query<{ id: string }>(
        "SELECT nextval(pg_get_serial_sequence('matrices', 'id')) AS id FROM generate_series(1, $1)", [MAX_RESULT_MATRICES])
      const outputs: Array<{ id: number, m: NewMatrix }> = []
      const value = build({
        storeMatrix: (m) => {
          if (outputs.length >= ids.length) throw new Error(`a result stores at most ${MAX_RESULT_MATRICES} matrices`)
          const id = Number(ids[outputs.length].id)
          outputs.push({ id, m })
          return id
        }
      })
      for (const { id, m } of outputs) await insertMatrix(c, m, attempt.id, id)
      const ended = await endJob(c, attempt,
        "status = 'done', result = $4, error = NULL, step = steps, progress = 100, stop_request = NULL", [JSON.stringify(value)])
      if (!ended) throw new Error(`job ${attempt.id} changed while locked`)
      return { ok: true, value }
    }),

    fail: async (attempt, error) => fenced(await endJob(pool, attempt, "status = 'failed', error = $4", [error]), undefined),

    stopped: async (attempt, request) => fenced(await settleStop(pool, attempt, request), undefined),

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

    // TODO(issue 12): history, filters, bulk, throughput, nodes and periodic slots on PostgreSQL.
    events: notYet,
    resolveCreated: notYet,
    bulkBatch: notYet,
    throughput: notYet,
    begin: notYet,
    claimPeriodic: notYet,
    registerNode: notYet,
    beatNode: notYet,
    nodes: notYet,
    leaveNode: notYet,
    close: async () => {
      if (ownsPool) await pool.end()
    }
  }
}
