import type Database from 'better-sqlite3'
import { type Db, statementPreparer } from '../db.js'
import { ConflictError, NotFoundError, QueueFullError } from '../errors.js'
import type { JobEventDetail, JobEventKind, JobEventRow, StopRequester } from './history.js'
import { createdIdSql, filterSql, type JobFilter } from './job-filter.js'
import { type Checkpoint, FINAL_STATUSES, JOB_STATUSES, type Job, type JobRow, type JobStatus, type NewJob, type StopRequest } from './types.js'

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())

/** The one conversion from a stored row to the API's job object. */
export function toJob (row: JobRow): Job {
  return {
    id: row.id,
    type: row.type,
    name: row.name,
    status: row.status,
    progress: row.progress,
    step: row.step,
    steps: row.steps,
    params: JSON.parse(row.params),
    priority: row.priority,
    result: row.result === null ? null : JSON.parse(row.result),
    error: row.error,
    attempts: row.attempts,
    pid: row.pid,
    timeoutSeconds: row.timeout_ms === null ? null : row.timeout_ms / 1000,
    retryOf: row.retry_of,
    cancelRequested: row.stop_request === 'cancel',
    createdAt: iso(row.created_at) as string,
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
    updatedAt: iso(row.updated_at) as string,
    heartbeatAt: iso(row.heartbeat_at),
    version: row.seq
  }
}

/** A page of jobs, newest first; pass `nextCursor` back as `cursor` for the following page. */
export interface JobPage { jobs: JobRow[], nextCursor: number | null }

/** The result of a submit: the job, and whether this call created it (false for a repeated idempotency key). */
export interface Submitted { row: JobRow, created: boolean }

/** Outcome of a fenced worker write: `lost` means the lease moved on and the worker must stop writing. */
export type Fenced<T> = { ok: true, value: T } | { ok: false }

/**
 * One attempt at a job: what every write on its behalf is fenced on. The lease alone is not enough (it starts
 * again at 1 in every job), nor is the id (a worker frozen long enough can outlive its job); the worker token
 * is random per process, so no other attempt can ever hold the same three. A claimed JobRow is one.
 */
export interface Attempt {
  readonly id: number
  readonly lease: number
  /** Token of the worker process; null never matches. */
  readonly worker: string | null
}

/** How a submit with an already used idempotency key is compared with the job that key created. */
export interface SubmitOptions {
  /** The client chose no seed (one was drawn for it): any stored seed matches. */
  anySeed?: boolean
}

/** A new job with the parameters of `row`, pointing back to it. */
export const retryOf = (row: JobRow): NewJob => ({
  type: row.type,
  name: row.name,
  params: JSON.parse(row.params),
  steps: row.steps,
  priority: row.priority,
  timeoutMs: row.timeout_ms,
  idempotencyKey: null,
  retryOf: row.id
})

/** JSON with sorted keys, so two equal objects give the same text. */
const canonical = (value: unknown): string => JSON.stringify(value, (_key, v) =>
  v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v)

/** Names the first field in which a repeated submit differs from the job its key created; null when none. */
export function submitDifference (row: JobRow, job: NewJob, options: SubmitOptions): string | null {
  if (row.type !== job.type) return 'type'
  if (row.name !== job.name) return 'name'
  if (row.priority !== job.priority) return 'priority'
  if (row.timeout_ms !== job.timeoutMs) return 'timeoutSeconds'
  const stored = JSON.parse(row.params) as Record<string, unknown>
  const wanted: Record<string, unknown> = { ...job.params }
  if (options.anySeed) wanted.seed = stored.seed
  for (const key of new Set([...Object.keys(stored), ...Object.keys(wanted)])) {
    if (canonical(stored[key]) !== canonical(wanted[key])) return key
  }
  return null
}

export type JobStore = ReturnType<typeof createJobStore>

/** What a bulk action does to each job it matches. */
export type BulkAction = 'cancel' | 'retry' | 'delete'

/** What one batch of a bulk action did; `cursor` is where the next batch starts (null: no job left). */
export interface BulkBatch {
  matched: number
  changed: number
  skipped: Array<{ id: number, reason: string }>
  cursor: number | null
}

/** Jobs finished per minute (done, failed) over a window, and the queue now. */
export interface Throughput {
  /** Start of the first minute (epoch ms). */
  from: number
  minutes: Array<{ at: number, done: number, failed: number }>
  pending: number
  running: number
}

/** A checkpoint is in the history if it is an attempt's first, or the last one there is this old (ms). */
const CHECKPOINT_EVENT_EVERY_MS = 60_000

/** The count of one status (@status) among the jobs `filter` matches: per status, so that (status, id),
 *  (status, type, id) or (status, name) answer it alone, without reading the rows. */
export const countSql = (filter: JobFilter): string => `SELECT count(*) FROM jobs WHERE status = @status${filterSql(filter, true).where}`

/**
 * The next job to claim: the highest priority, then the oldest. Read on the queue's own partial index, in its order:
 * left to itself the planner picks (status, created_at) and sorts every pending job for each claim, ~2 ms at 10 000
 * pending (MAX_PENDING's default) inside the claim's write transaction, against ~0.02 ms on jobs_queue.
 */
export const NEXT_PENDING_SQL = "SELECT * FROM jobs INDEXED BY jobs_queue WHERE status = 'pending' ORDER BY priority DESC, id LIMIT 1"

/** One entry of the change feed: a job's latest state, or the id of a deleted job; `seq` is its change number. */
export type Change = { seq: number, row: JobRow, deleted?: undefined } | { seq: number, deleted: number, row?: undefined }

/** `eager: false` prepares each statement at its first use (a worker's store); the default prepares them all at once. */
export interface StoreOptions {
  readonly eager?: boolean
}

/**
 * All job SQL. Every statement is prepared once: when the store is made, or at its first use with `eager: false`
 * (a worker's store; statementPreparer). Methods are synchronous; anything that reads and then writes runs in a
 * BEGIN IMMEDIATE transaction. Worker writes are fenced: they match on (id, lease, worker token,
 * status 'running') and report `ok: false` when the attempt is no longer the job's current one.
 */
export function createJobStore (db: Db, clock: () => number = Date.now, { eager = true }: StoreOptions = {}) {
  const prepared = statementPreparer(eager)
  const getStmt = prepared(() => db.prepare<[number], JobRow>('SELECT * FROM jobs WHERE id = ?'))
  const byKeyStmt = prepared(() => db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE idempotency_key = ?'))
  const countPendingStmt = prepared(() => db.prepare<[], { c: number }>("SELECT count(*) AS c FROM jobs WHERE status = 'pending'"))
  const insertStmt = prepared(() => db.prepare<Record<string, unknown>, JobRow>(`
    INSERT INTO jobs (type, name, params, priority, steps, timeout_ms, idempotency_key, retry_of, created_at, updated_at)
    VALUES (@type, @name, @params, @priority, @steps, @timeoutMs, @idempotencyKey, @retryOf, @now, @now)
    RETURNING *`))
  const countsStmt = prepared(() => db.prepare<[], { status: JobStatus, c: number }>('SELECT status, count(*) AS c FROM jobs GROUP BY status'))
  const countStatusStmt = prepared(() => db.prepare<[JobStatus], number>('SELECT count(*) FROM jobs WHERE status = ?').pluck())
  // Filtered lists and counts: one statement per shape of filter (which conditions it has), prepared at first use.
  // Each status is read on its own through (status, id) or (status, type, id), newest first without a sort.
  const shaped = new Map<string, Database.Statement>()
  const prepareShaped = (key: string, sql: () => string): Database.Statement => {
    let stmt = shaped.get(key)
    if (!stmt) shaped.set(key, (stmt = db.prepare(sql())))
    return stmt
  }
  const listShaped = (filter: JobFilter, status: JobStatus | null, columns: '*' | 'id, status'): Database.Statement => {
    const { where, shape } = filterSql(filter)
    return prepareShaped(`list:${columns}:${status === null ? '' : 's'}:${shape}`, () =>
      `SELECT ${columns} FROM jobs WHERE id < @cursor${status === null ? '' : ' AND status = @status'}${where} ORDER BY id DESC LIMIT @limit`)
  }
  const countShaped = (filter: JobFilter): Database.Statement =>
    prepareShaped(`count:${filterSql(filter, true).shape}`, () => countSql(filter)).pluck()
  // ---- history (migrations/006) ----
  const addEventStmt = prepared(() => db.prepare<{ id: number, kind: JobEventKind, detail: string | null, attempt: number | null, now: number }>(`
    INSERT INTO job_events (job_id, at, kind, attempt, lease, step, detail)
    SELECT id, @now, @kind, coalesce(@attempt, attempts), lease, step, @detail FROM jobs WHERE id = @id`))
  const eventsStmt = prepared(() => db.prepare<[number], JobEventRow>('SELECT * FROM job_events WHERE job_id = ? ORDER BY id'))
  const lastCheckpointEventStmt = prepared(() => db.prepare<[number], { at: number, lease: number }>(
    "SELECT at, lease FROM job_events WHERE job_id = ? AND kind = 'checkpoint' ORDER BY id DESC LIMIT 1"))
  // ---- throughput ----
  const finishedPerMinuteStmt = prepared(() => db.prepare<{ from: number }, { minute: number, status: JobStatus, c: number }>(`
    SELECT CAST((finished_at - @from) / 60000 AS INTEGER) AS minute, status, count(*) AS c FROM jobs
    WHERE finished_at >= @from AND finished_at IS NOT NULL GROUP BY minute, status`))
  const cancelPendingStmt = prepared(() => db.prepare<{ id: number, now: number }>(`
    UPDATE jobs SET status = 'canceled', finished_at = @now, updated_at = @now WHERE id = @id AND status = 'pending'`))
  const requestStopStmt = prepared(() => db.prepare<{ id: number, request: StopRequest, now: number }>(`
    UPDATE jobs SET stop_request = @request, stop_requested_at = @now, updated_at = @now
    WHERE id = @id AND status = 'running' AND (stop_request IS NULL OR stop_request = 'release')`))
  const deleteStmt = prepared(() => db.prepare<[number]>("DELETE FROM jobs WHERE id = ? AND status IN ('done', 'failed', 'canceled')"))
  const nextPendingStmt = prepared(() => db.prepare<[], JobRow>(NEXT_PENDING_SQL))
  const claimStmt = prepared(() => db.prepare<{ id: number, worker: string, node: string | null, leaseMs: number | null, now: number }, JobRow>(`
    UPDATE jobs SET status = 'running', lease = lease + 1, attempts = attempts + 1, worker = @worker, node = @node, lease_ms = @leaseMs, lease_ms_lease = lease + 1,
      pid = NULL, pid_start = NULL,
      heartbeat_at = @now, stop_request = NULL, stop_requested_at = NULL,
      started_at = coalesce(started_at, @now), updated_at = @now
    WHERE id = @id AND status = 'pending'
    RETURNING *`))
  const runningStmt = prepared(() => db.prepare<[], JobRow>("SELECT * FROM jobs WHERE status = 'running'"))
  const anyPendingStmt = prepared(() => db.prepare<[], number>("SELECT 1 FROM jobs WHERE status = 'pending' LIMIT 1").pluck())
  const assignedStmt = prepared(() => db.prepare<[string], JobRow>("SELECT * FROM jobs WHERE worker = ? AND status = 'running'"))
  const beatStmt = prepared(() => db.prepare<{ id: number, lease: number, worker: string | null, pid: number | null, pidStart: number | null, step: number, progress: number, now: number }, { stop_request: StopRequest | null }>(`
    UPDATE jobs SET pid = coalesce(@pid, pid), pid_start = coalesce(@pidStart, pid_start), step = @step, progress = @progress,
      heartbeat_at = @now, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'
    RETURNING stop_request`))
  const saveCheckpointStmt = prepared(() => db.prepare<{ id: number, lease: number, step: number, state: Buffer, now: number }>(`
    INSERT INTO checkpoints (job_id, lease, step, state, saved_at) VALUES (@id, @lease, @step, @state, @now)
    ON CONFLICT (job_id) DO UPDATE SET lease = excluded.lease, step = excluded.step, state = excluded.state,
      saved_at = excluded.saved_at`))
  const loadCheckpointStmt = prepared(() => db.prepare<[number], { step: number, state: Buffer }>(
    'SELECT step, state FROM checkpoints WHERE job_id = ?'))
  const checkpointStepStmt = prepared(() => db.prepare<[number], { step: number, saved_at: number }>(
    'SELECT step, saved_at FROM checkpoints WHERE job_id = ?'))
  const dropCheckpointStmt = prepared(() => db.prepare<[number]>('DELETE FROM checkpoints WHERE job_id = ?'))
  type Fence = { id: number, lease: number, worker: string | null }
  const doneStmt = prepared(() => db.prepare<Fence & { result: string, now: number }>(`
    UPDATE jobs SET status = 'done', result = @result, error = NULL, step = steps, progress = 100, pid = NULL, pid_start = NULL,
      stop_request = NULL, finished_at = @now, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`))
  const failStmt = prepared(() => db.prepare<Fence & { error: string, now: number }>(`
    UPDATE jobs SET status = 'failed', error = @error, pid = NULL, pid_start = NULL, finished_at = @now, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`))
  const cancelRunningStmt = prepared(() => db.prepare<Fence & { now: number }>(`
    UPDATE jobs SET status = 'canceled', pid = NULL, pid_start = NULL, finished_at = @now, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`))
  // A release is not the job's fault: the attempt it used is given back (so is one the database kept from
  // working, with the reason kept in error).
  const releaseStmt = prepared(() => db.prepare<Fence & { error: string | null, now: number }>(`
    UPDATE jobs SET status = 'pending', attempts = max(attempts - 1, 0), error = coalesce(@error, error), worker = NULL,
      pid = NULL, pid_start = NULL, stop_request = NULL, stop_requested_at = NULL, heartbeat_at = NULL, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`))
  const requeueStmt = prepared(() => db.prepare<Fence & { error: string, now: number }>(`
    UPDATE jobs SET status = 'pending', error = @error, worker = NULL, pid = NULL, pid_start = NULL, heartbeat_at = NULL,
      stop_request = NULL, stop_requested_at = NULL, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`))
  // ---- change feed (migrations/004): rows and tombstones by change number ----
  const changedStmt = prepared(() => db.prepare<{ after: number, limit: number }, JobRow>(
    'SELECT * FROM jobs WHERE seq > @after ORDER BY seq LIMIT @limit'))
  const tombstonesStmt = prepared(() => db.prepare<{ after: number, limit: number }, { seq: number, job_id: number }>(
    'SELECT seq, job_id FROM job_tombstones WHERE seq > @after ORDER BY seq LIMIT @limit'))
  const latestSeqStmt = prepared(() => db.prepare<[], number>('SELECT n FROM change_counter').pluck())
  const resumableStmt = prepared(() => db.prepare<[], number>('SELECT max(n - keep_tombstones, 0) FROM change_counter').pluck())
  // Counting stops at @cap rows: "more than the cap" is all a caller needs, without walking every change.
  const countRowsStmt = prepared(() => db.prepare<{ after: number, upTo: number, cap: number }, number>(
    'SELECT count(*) FROM (SELECT 1 FROM jobs WHERE seq > @after AND seq <= @upTo LIMIT @cap)').pluck())
  const countTombstonesStmt = prepared(() => db.prepare<{ after: number, upTo: number, cap: number }, number>(
    'SELECT count(*) FROM (SELECT 1 FROM job_tombstones WHERE seq > @after AND seq <= @upTo LIMIT @cap)').pluck())

  const ownedStmt = prepared(() => db.prepare<Fence, number>(
    "SELECT 1 FROM jobs WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'").pluck())
  const fenced = <T>(changes: number, value: T): Fenced<T> => (changes === 1 ? { ok: true, value } : { ok: false })

  /** Adds an event to a job's history; call it inside the transaction of the change it describes. `attempt`
   *  overrides the job's attempts count (a release gives its attempt back in the same change). */
  const record = (id: number, kind: JobEventKind, detail?: JobEventDetail, attempt: number | null = null): void => {
    addEventStmt().run({ id, kind, detail: detail && Object.keys(detail).length > 0 ? JSON.stringify(detail) : null, attempt, now: clock() })
  }
  const resumeStep = (id: number): number => checkpointStepStmt().get(id)?.step ?? 0

  const insertTx = db.transaction((job: NewJob, maxPending: number, options: SubmitOptions): Submitted => {
    if (job.idempotencyKey !== null) {
      const existing = byKeyStmt().get(job.idempotencyKey)
      if (existing) {
        const differs = submitDifference(existing, job, options)
        if (differs !== null) {
          throw new ConflictError(`Idempotency-Key "${job.idempotencyKey}" was already used for job ${existing.id} with a different request (${differs} differs); use a new key for a new job`)
        }
        return { row: existing, created: false }
      }
    }
    const { c } = countPendingStmt().get() as { c: number }
    if (c >= maxPending) {
      throw new QueueFullError(`the queue is full: ${c} jobs are pending (MAX_PENDING=${maxPending}); retry later`, 5)
    }
    return { row: insertJob(job), created: true }
  })

  /** Inserts a pending job and its "submitted" event; inside a transaction that checked the queue's room. */
  const insertJob = (job: NewJob): JobRow => {
    const inserted = insertStmt().get({
      type: job.type,
      name: job.name,
      params: JSON.stringify(job.params),
      priority: job.priority,
      steps: job.steps,
      timeoutMs: job.timeoutMs,
      idempotencyKey: job.idempotencyKey,
      retryOf: job.retryOf,
      now: clock()
    }) as JobRow
    record(inserted.id, 'submitted', job.retryOf === null ? undefined : { retryOf: job.retryOf })
    // RETURNING shows the row before the change-counter trigger ran; read it back for its seq.
    return getStmt().get(inserted.id) as JobRow
  }

  const fence = (a: Attempt): Fence => ({ id: a.id, lease: a.lease, worker: a.worker })

  /** Applies what a stop request means once the worker has stopped, fenced on its attempt; `why` goes in the
   *  history. */
  const settleStop = (attempt: Attempt, request: StopRequest, why?: string): boolean => db.transaction(() => {
    const now = clock()
    const f = fence(attempt)
    if (request === 'release') {
      if (!ownedStmt().get(f)) return false
      record(attempt.id, 'released', { reason: why ?? 'asked to release', resumesFromStep: resumeStep(attempt.id) })
      return releaseStmt().run({ ...f, error: null, now }).changes === 1
    }
    const changes = request === 'cancel'
      ? cancelRunningStmt().run({ ...f, now }).changes
      : failStmt().run({ ...f, error: 'timeout', now }).changes
    if (changes === 1) {
      dropCheckpointStmt().run(attempt.id)
      record(attempt.id, request === 'cancel' ? 'canceled' : 'failed', request === 'cancel' ? {} : { reason: 'timeout' })
    }
    return changes === 1
  }).immediate()

  /** One job of a bulk action, inside its batch's transaction: what was done, or why it was skipped. */
  const retriedAsStmt = prepared(() => db.prepare<[number], number>('SELECT id FROM jobs WHERE retry_of = ? ORDER BY id LIMIT 1').pluck())
  const bulkOne = (row: JobRow, action: BulkAction, room: { pending: number, max: number }): string | null => {
    const { id, status } = row
    if (action === 'cancel') {
      if (FINAL_STATUSES.includes(status)) return `already ${status}`
      if (status === 'pending') {
        cancelPendingStmt().run({ id, now: clock() })
        dropCheckpointStmt().run(id)
        record(id, 'canceled', { by: 'bulk' })
        return null
      }
      if (row.stop_request === 'cancel' || row.stop_request === 'timeout') return `already asked to stop (${row.stop_request})`
      requestStopStmt().run({ id, request: 'cancel', now: clock() })
      record(id, 'stop-requested', { request: 'cancel', by: 'bulk' })
      return null
    }
    if (action === 'delete') {
      if (!FINAL_STATUSES.includes(status)) return `${status}: only finished jobs can be deleted (cancel it first)`
      dropCheckpointStmt().run(id)
      deleteStmt().run(id)
      return null
    }
    if (status !== 'failed' && status !== 'canceled') return `${status}: only failed or canceled jobs can be retried`
    const retried = retriedAsStmt().get(id)
    if (retried !== undefined) return `already retried as job ${retried}`
    if (room.pending >= room.max) return `the queue is full: ${room.pending} jobs are pending (MAX_PENDING=${room.max})`
    insertJob(retryOf(row))
    room.pending++
    return null
  }

  // Retention. A purge goes in batches, each its own transaction, so workers are never kept waiting on a long delete.
  const purgeCheckpointsStmt = prepared(() => db.prepare<{ before: number, limit: number }>(`
    DELETE FROM checkpoints WHERE job_id IN (SELECT id FROM jobs
      WHERE status IN ('done', 'failed', 'canceled') AND finished_at < @before ORDER BY id LIMIT @limit)`))
  const purgeJobsStmt = prepared(() => db.prepare<{ before: number, limit: number }>(`
    DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
      WHERE status IN ('done', 'failed', 'canceled') AND finished_at < @before ORDER BY id LIMIT @limit)`))
  const purgeTx = db.transaction((before: number, limit: number): number => {
    purgeCheckpointsStmt().run({ before, limit })
    return purgeJobsStmt().run({ before, limit }).changes
  })

  /** Rows matching `filter` with ids below `cursor`, newest first, at most `limit`: one indexed walk per status,
   *  merged (each walk is newest first, so the first `limit` of the merge are the answer). */
  function matching<T extends { id: number }> (filter: JobFilter, cursor: number, limit: number, columns: '*' | 'id, status'): T[] {
    const binds = { ...filterSql(filter).binds, cursor, limit }
    const statuses = filter.status && filter.status.length > 0 && filter.status.length < JOB_STATUSES.length ? [...new Set(filter.status)] : null
    if (!statuses) return listShaped(filter, null, columns).all(binds) as T[]
    const rows = statuses.flatMap((status) => listShaped(filter, status, columns).all({ ...binds, status }) as T[])
    return statuses.length === 1 ? rows : rows.sort((a, b) => b.id - a.id).slice(0, limit)
  }

  return {
    // ---- API side -----------------------------------------------------------------------------------------
    /** Inserts a pending job, or returns the job already stored under the same idempotency key. Throws
     *  QueueFullError when MAX_PENDING jobs are already waiting, ConflictError when the key was used for a
     *  different request (type, name, priority, time limit or parameters). */
    submit (job: NewJob, maxPending: number, options: SubmitOptions = {}): Submitted {
      return insertTx.immediate(job, maxPending, options)
    },

    get (id: number): JobRow | undefined {
      return getStmt().get(id)
    },

    /** A page of jobs matching `filter` (or one status, the older form), newest first. */
    list (options: { status?: JobStatus, filter?: JobFilter, limit: number, cursor?: number }): JobPage {
      const filter: JobFilter = options.filter ?? (options.status ? { status: [options.status] } : {})
      const rows = matching<JobRow>(filter, options.cursor ?? Number.MAX_SAFE_INTEGER, options.limit + 1, '*')
      const more = rows.length > options.limit
      if (more) rows.pop()
      return { jobs: rows, nextCursor: more ? rows[rows.length - 1].id : null }
    },

    /** Number of jobs in each status (every status present, zero when none); with a filter, of the jobs it
     *  matches apart from its statuses (so a page can show what each status holds under the other conditions). */
    counts (filter?: JobFilter): Record<JobStatus, number> {
      const out: Record<JobStatus, number> = { pending: 0, running: 0, done: 0, failed: 0, canceled: 0 }
      if (!filter) {
        for (const { status, c } of countsStmt().all()) out[status] = c
        return out
      }
      const stmt = countShaped(filter)
      const binds = filterSql(filter, true).binds
      for (const status of JOB_STATUSES) out[status] = stmt.get({ ...binds, status }) as number
      return out
    },

    /** The history of a job, oldest first (at most the submit and the latest 200 events). */
    events (id: number): JobEventRow[] {
      return eventsStmt().all(id)
    },

    /**
     * One batch of a bulk action: up to `batch` jobs matching `filter` with ids below `cursor`, newest first, each
     * changed as the single-job routes would (cancel, retry, delete) or skipped with the reason, in one short
     * transaction. Call again with the returned cursor until it is null.
     */
    /** `filter` with its creation range resolved to the run of ids created in it, searched once (for a bulk
     *  action, whose batches would each search it again); unchanged without a range. */
    resolveCreated (filter: JobFilter): JobFilter {
      if (filter.createdFrom === undefined && filter.createdTo === undefined) return filter
      const range = [...(filter.createdFrom !== undefined ? ['created_at >= @fFrom'] : []), ...(filter.createdTo !== undefined ? ['created_at < @fTo'] : [])]
      const binds = { fFrom: filter.createdFrom, fTo: filter.createdTo }
      const bounds = db.prepare(`SELECT (${createdIdSql('min', range)}) AS min, (${createdIdSql('max', range)}) AS max`)
        .get(Object.fromEntries(Object.entries(binds).filter(([, v]) => v !== undefined))) as { min: number | null, max: number | null }
      return { ...filter, createdIds: { min: bounds.min ?? 0, max: bounds.max ?? 0 } }
    },

    bulkBatch (action: BulkAction, filter: JobFilter, cursor: number, batch: number, maxPending: number): BulkBatch {
      return db.transaction((): BulkBatch => {
        const rows = matching<JobRow>(filter, cursor, batch, '*')
        const out: BulkBatch = { matched: rows.length, changed: 0, skipped: [], cursor: rows.length < batch ? null : rows[rows.length - 1].id }
        const room = { pending: action === 'retry' ? (countPendingStmt().get() as { c: number }).c : 0, max: maxPending }
        for (const row of rows) {
          const skipped = bulkOne(row, action, room)
          if (skipped === null) out.changed++
          else out.skipped.push({ id: row.id, reason: skipped })
        }
        return out
      }).immediate()
    },

    /** Jobs finished per minute (done, failed) in the `minutes` whole minutes up to now, and the queue now. */
    throughput (minutes: number): Throughput {
      const now = clock()
      const from = (Math.floor(now / 60_000) - minutes + 1) * 60_000
      const out = Array.from({ length: minutes }, (_, i) => ({ at: from + i * 60_000, done: 0, failed: 0 }))
      for (const { minute, status, c } of finishedPerMinuteStmt().all({ from })) {
        const slot = out[Math.floor(minute)]
        if (slot && (status === 'done' || status === 'failed')) slot[status] = c
      }
      return { from, minutes: out, pending: countStatusStmt().get('pending') as number, running: countStatusStmt().get('running') as number }
    },

    /** Cancels a pending job at once (with the checkpoint a released attempt left), or asks the worker of a
     *  running one to stop. */
    cancel (id: number): JobRow {
      return db.transaction(() => {
        const row = getStmt().get(id)
        if (!row) throw new NotFoundError(`job ${id} not found`)
        const now = clock()
        if (row.status === 'pending') {
          cancelPendingStmt().run({ id, now })
          dropCheckpointStmt().run(id)
          record(id, 'canceled', { by: 'api' })
        } else if (row.status === 'running') {
          if (requestStopStmt().run({ id, request: 'cancel', now }).changes === 1) record(id, 'stop-requested', { request: 'cancel', by: 'api' })
        } else throw new ConflictError(`job ${id} is already ${row.status}`)
        return getStmt().get(id) as JobRow
      }).immediate()
    },

    /** Deletes a finished job and everything that belongs to it. */
    remove (id: number): void {
      db.transaction(() => {
        const row = getStmt().get(id)
        if (!row) throw new NotFoundError(`job ${id} not found`)
        if (deleteStmt().run(id).changes !== 1) throw new ConflictError(`job ${id} is ${row.status}; only finished jobs can be deleted`)
        dropCheckpointStmt().run(id)
      }).immediate()
    },

    /** A new pending job with the parameters of a failed or canceled one. */
    retry (id: number, maxPending: number): JobRow {
      const row = getStmt().get(id)
      if (!row) throw new NotFoundError(`job ${id} not found`)
      if (row.status !== 'failed' && row.status !== 'canceled') {
        throw new ConflictError(`job ${id} is ${row.status}; only failed or canceled jobs can be retried`)
      }
      return insertTx.immediate(retryOf(row), maxPending, {}).row
    },

    // ---- change feed ---------------------------------------------------------------------------------------
    /** Rows whose latest change comes after change number `after` (see migrations/004), in commit order. */
    changedAfter (after: number, limit = 500): JobRow[] {
      return changedStmt().all({ after, limit })
    },

    /** Changes after `after`, in commit order: a job's latest state, or the tombstone of a deleted job. */
    changesAfter (after: number, limit = 500): Change[] {
      const rows = changedStmt().all({ after, limit })
      const tombstones = tombstonesStmt().all({ after, limit })
      if (tombstones.length === 0) return rows.map((row) => ({ seq: row.seq, row }))
      const changes: Change[] = [
        ...rows.map((row) => ({ seq: row.seq, row })),
        ...tombstones.map((t) => ({ seq: t.seq, deleted: t.job_id }))
      ]
      return changes.sort((a, b) => a.seq - b.seq).slice(0, limit)
    },

    /** How many changes lie in (after, upTo], counting no further than `cap + 1`: above `cap` means "too many". */
    countChanges (after: number, upTo: number, cap: number): number {
      const rows = countRowsStmt().get({ after, upTo, cap: cap + 1 }) as number
      if (rows > cap) return rows
      return rows + (countTombstonesStmt().get({ after, upTo, cap: cap + 1 - rows }) as number)
    },

    /** The number of the latest change (0 for none). It only ever increases, whatever is deleted. */
    latestSeq (): number {
      return latestSeqStmt().get() as number
    },

    /** The oldest change number a client can resume from and still learn of every deletion since. */
    resumableAfter (): number {
      return resumableStmt().get() as number
    },

    // ---- scheduler side ----------------------------------------------------------------------------------
    /** Gives the next pending job (highest priority, then oldest) to the worker `worker` (process `pid`, for
     *  the history, of node `node`, forked with lease `leaseMs`); undefined if none. */
    claimNext (worker: string, pid?: number, node?: string, leaseMs?: number): JobRow | undefined {
      return db.transaction(() => {
        const next = nextPendingStmt().get()
        const claimed = next ? claimStmt().get({ id: next.id, worker, node: node ?? null, leaseMs: leaseMs ?? null, now: clock() }) : undefined
        if (claimed) record(claimed.id, 'claimed', { pid: pid ?? null })
        return claimed
      }).immediate()
    },

    running (): JobRow[] {
      return runningStmt().all()
    },

    /** Whether any job is waiting. */
    hasPending (): boolean {
      return anyPendingStmt().get() !== undefined
    },

    /** Asks the worker of a running job to stop (`by` whom, for the history); false if the job is not running. */
    requestStop (id: number, request: StopRequest, by: StopRequester = 'scheduler'): boolean {
      return db.transaction(() => {
        if (requestStopStmt().run({ id, request, now: clock() }).changes !== 1) return false
        record(id, 'stop-requested', { request, by })
        return true
      }).immediate()
    },

    /** The server's side of a stop its worker did not carry out in time (the worker was killed). */
    settleStop,

    /** An attempt whose worker is gone: back to pending (resuming from its checkpoint) or, with no attempt
     *  left, failed with the reason. Fenced: does nothing if the worker already ended the job. */
    markLost (attempt: Attempt, reason: string, maxAttempts: number): 'requeued' | 'failed' | 'gone' {
      return db.transaction(() => {
        const { id, lease, worker } = attempt
        const row = getStmt().get(id)
        if (!row || row.status !== 'running' || row.lease !== lease || row.worker !== worker) return 'gone' as const
        const now = clock()
        if (row.attempts >= maxAttempts) {
          record(id, 'lost', { reason, resumesFromStep: null })
          const error = `${reason} (attempt ${row.attempts} of ${maxAttempts})`
          failStmt().run({ id, lease, worker, error, now })
          dropCheckpointStmt().run(id)
          record(id, 'failed', { reason: error })
          return 'failed' as const
        }
        record(id, 'lost', { reason, resumesFromStep: resumeStep(id) })
        requeueStmt().run({ id, lease, worker, error: reason, now })
        return 'requeued' as const
      }).immediate()
    },

    /** An attempt that ended through no fault of the job (its worker found the database locked for too long):
     *  back to pending without using up an attempt, the reason kept in `error`. Fenced like markLost. */
    giveBack (attempt: Attempt, reason: string): boolean {
      return db.transaction(() => {
        if (!ownedStmt().get(fence(attempt))) return false
        record(attempt.id, 'released', { reason, resumesFromStep: resumeStep(attempt.id) })
        return releaseStmt().run({ ...fence(attempt), error: reason, now: clock() }).changes === 1
      }).immediate()
    },

    /** Step of the saved checkpoint, if any (for logs and tests). */
    checkpointInfo (id: number): { step: number, saved_at: number } | undefined {
      return checkpointStepStmt().get(id)
    },

    // ---- worker side (every write fenced on the lease) ---------------------------------------------------
    /** The job the server assigned to worker `worker`, if any yet. */
    assigned (worker: string): JobRow | undefined {
      return assignedStmt().get(worker)
    },

    loadCheckpoint (id: number): Checkpoint | undefined {
      return loadCheckpointStmt().get(id)
    },

    /** The worker's first write: heartbeat with its pid (as `beat`), and, unless a stop is already asked for,
     *  "started" in the history with the step of the checkpoint it resumes from. */
    begin (attempt: Attempt, progress: { step: number, progress: number, pid: number, pidStart?: number }): Fenced<StopRequest | null> {
      return db.transaction((): Fenced<StopRequest | null> => {
        const row = beatStmt().get({ ...fence(attempt), pid: progress.pid, pidStart: progress.pidStart ?? null, step: progress.step, progress: progress.progress, now: clock() })
        if (!row) return { ok: false }
        if (!row.stop_request) record(attempt.id, 'started', { pid: progress.pid, resumedFromStep: checkpointStepStmt().get(attempt.id)?.step ?? null })
        return { ok: true, value: row.stop_request }
      }).immediate()
    },

    /** Heartbeat with progress; returns the pending stop request (or null). The first one also records which
     *  process the worker is (`pid`, and `pidStart`, its start time), so the server never trusts or signals
     *  another process that later gets the same pid. */
    beat (attempt: Attempt, progress: { step: number, progress: number, pid?: number, pidStart?: number }): Fenced<StopRequest | null> {
      const row = beatStmt().get({ ...fence(attempt), pid: progress.pid ?? null, pidStart: progress.pidStart ?? null, step: progress.step, progress: progress.progress, now: clock() })
      return row ? { ok: true, value: row.stop_request } : { ok: false }
    },

    /** Heartbeat, progress and checkpoint in one transaction. */
    saveCheckpoint (attempt: Attempt, checkpoint: Checkpoint, progress: number): Fenced<StopRequest | null> {
      return db.transaction((): Fenced<StopRequest | null> => {
        const now = clock()
        const row = beatStmt().get({ ...fence(attempt), pid: null, pidStart: null, step: checkpoint.step, progress, now })
        if (!row) return { ok: false }
        saveCheckpointStmt().run({ id: attempt.id, lease: attempt.lease, step: checkpoint.step, state: checkpoint.state, now })
        // In the history: an attempt's first checkpoint, then at most one a minute.
        const last = lastCheckpointEventStmt().get(attempt.id)
        if (!last || last.lease !== attempt.lease || now - last.at >= CHECKPOINT_EVENT_EVERY_MS) record(attempt.id, 'checkpoint')
        return { ok: true, value: row.stop_request }
      }).immediate()
    },

    /** The job is done: result stored and checkpoint deleted, in one transaction. */
    complete (attempt: Attempt, result: object | (() => object)): Fenced<void> {
      return db.transaction(() => {
        // A result given as a function is produced here, once the attempt is known to hold the job, so whatever
        // it writes (a result matrix) commits with the job's end or not at all.
        if (typeof result === 'function') {
          if (!ownedStmt().get(fence(attempt))) return fenced(0, undefined)
          result = result()
        }
        const now = clock()
        const changes = doneStmt().run({ ...fence(attempt), result: JSON.stringify(result), now }).changes
        if (changes === 1) {
          dropCheckpointStmt().run(attempt.id)
          const { elapsedMs, gflops } = result as { elapsedMs?: unknown, gflops?: unknown }
          const started = getStmt().get(attempt.id)?.started_at
          record(attempt.id, 'done', {
            elapsedMs: typeof elapsedMs === 'number' ? elapsedMs : started ? now - started : undefined,
            gflops: typeof gflops === 'number' ? gflops : undefined
          })
        }
        return fenced(changes, undefined)
      }).immediate()
    },

    /** The job failed with `error`; no retry (the computation itself is at fault). */
    fail (attempt: Attempt, error: string): Fenced<void> {
      return db.transaction(() => {
        const changes = failStmt().run({ ...fence(attempt), error, now: clock() }).changes
        if (changes === 1) {
          dropCheckpointStmt().run(attempt.id)
          record(attempt.id, 'failed', { reason: error })
        }
        return fenced(changes, undefined)
      }).immediate()
    },

    /** The worker stopped as requested: canceled, timed out, or released back to pending. */
    stopped (attempt: Attempt, request: StopRequest): Fenced<void> {
      return fenced(settleStop(attempt, request, request === 'release' ? 'the worker checkpointed and gave it back' : undefined) ? 1 : 0, undefined)
    },

    // ---- operations --------------------------------------------------------------------------------------
    /** Deletes finished jobs (done, failed, canceled) that finished before `before` (epoch ms), with their
     *  checkpoints, in batches of `batch`; returns how many jobs were deleted. Pending and running jobs stay. */
    purgeFinishedBefore (before: number, batch = 1000): number {
      let total = 0
      for (;;) {
        const deleted = purgeTx.immediate(before, batch)
        total += deleted
        if (deleted < batch) return total
      }
    }
  }
}
