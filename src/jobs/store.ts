import type { Db } from '../db.js'
import { ConflictError, NotFoundError, QueueFullError } from '../errors.js'
import type { Checkpoint, Job, JobRow, JobStatus, NewJob, StopRequest } from './types.js'

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

/** One entry of the change feed: a job's latest state, or the id of a deleted job; `seq` is its change number. */
export type Change = { seq: number, row: JobRow, deleted?: undefined } | { seq: number, deleted: number, row?: undefined }

/**
 * All job SQL. Every statement is prepared once; methods are synchronous; anything that reads and then
 * writes runs in a BEGIN IMMEDIATE transaction. Worker writes are fenced: they match on (id, lease, worker token,
 * status 'running') and report `ok: false` when the attempt is no longer the job's current one.
 */
export function createJobStore (db: Db, clock: () => number = Date.now) {
  const getStmt = db.prepare<[number], JobRow>('SELECT * FROM jobs WHERE id = ?')
  const byKeyStmt = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE idempotency_key = ?')
  const countPendingStmt = db.prepare<[], { c: number }>("SELECT count(*) AS c FROM jobs WHERE status = 'pending'")
  const insertStmt = db.prepare<Record<string, unknown>, JobRow>(`
    INSERT INTO jobs (type, name, params, priority, steps, timeout_ms, idempotency_key, retry_of, created_at, updated_at)
    VALUES (@type, @name, @params, @priority, @steps, @timeoutMs, @idempotencyKey, @retryOf, @now, @now)
    RETURNING *`)
  const listStmt = db.prepare<{ cursor: number, limit: number }, JobRow>(
    'SELECT * FROM jobs WHERE id < @cursor ORDER BY id DESC LIMIT @limit')
  const listByStatusStmt = db.prepare<{ status: string, cursor: number, limit: number }, JobRow>(
    'SELECT * FROM jobs WHERE status = @status AND id < @cursor ORDER BY id DESC LIMIT @limit')
  const countsStmt = db.prepare<[], { status: JobStatus, c: number }>('SELECT status, count(*) AS c FROM jobs GROUP BY status')
  const cancelPendingStmt = db.prepare<{ id: number, now: number }>(`
    UPDATE jobs SET status = 'canceled', finished_at = @now, updated_at = @now WHERE id = @id AND status = 'pending'`)
  const requestStopStmt = db.prepare<{ id: number, request: StopRequest, now: number }>(`
    UPDATE jobs SET stop_request = @request, stop_requested_at = @now, updated_at = @now
    WHERE id = @id AND status = 'running' AND (stop_request IS NULL OR stop_request = 'release')`)
  const deleteStmt = db.prepare<[number]>("DELETE FROM jobs WHERE id = ? AND status IN ('done', 'failed', 'canceled')")
  const nextPendingStmt = db.prepare<[], JobRow>(`
    SELECT * FROM jobs WHERE status = 'pending' ORDER BY priority DESC, id LIMIT 1`)
  const claimStmt = db.prepare<{ id: number, worker: string, now: number }, JobRow>(`
    UPDATE jobs SET status = 'running', lease = lease + 1, attempts = attempts + 1, worker = @worker, pid = NULL, pid_start = NULL,
      heartbeat_at = @now, stop_request = NULL, stop_requested_at = NULL,
      started_at = coalesce(started_at, @now), updated_at = @now
    WHERE id = @id AND status = 'pending'
    RETURNING *`)
  const runningStmt = db.prepare<[], JobRow>("SELECT * FROM jobs WHERE status = 'running'")
  const anyPendingStmt = db.prepare<[], number>("SELECT 1 FROM jobs WHERE status = 'pending' LIMIT 1").pluck()
  const assignedStmt = db.prepare<[string], JobRow>("SELECT * FROM jobs WHERE worker = ? AND status = 'running'")
  const beatStmt = db.prepare<{ id: number, lease: number, worker: string | null, pid: number | null, pidStart: number | null, step: number, progress: number, now: number }, { stop_request: StopRequest | null }>(`
    UPDATE jobs SET pid = coalesce(@pid, pid), pid_start = coalesce(@pidStart, pid_start), step = @step, progress = @progress,
      heartbeat_at = @now, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'
    RETURNING stop_request`)
  const saveCheckpointStmt = db.prepare<{ id: number, lease: number, step: number, state: Buffer, now: number }>(`
    INSERT INTO checkpoints (job_id, lease, step, state, saved_at) VALUES (@id, @lease, @step, @state, @now)
    ON CONFLICT (job_id) DO UPDATE SET lease = excluded.lease, step = excluded.step, state = excluded.state,
      saved_at = excluded.saved_at`)
  const loadCheckpointStmt = db.prepare<[number], { step: number, state: Buffer }>(
    'SELECT step, state FROM checkpoints WHERE job_id = ?')
  const checkpointStepStmt = db.prepare<[number], { step: number, saved_at: number }>(
    'SELECT step, saved_at FROM checkpoints WHERE job_id = ?')
  const dropCheckpointStmt = db.prepare<[number]>('DELETE FROM checkpoints WHERE job_id = ?')
  type Fence = { id: number, lease: number, worker: string | null }
  const doneStmt = db.prepare<Fence & { result: string, now: number }>(`
    UPDATE jobs SET status = 'done', result = @result, error = NULL, step = steps, progress = 100, pid = NULL, pid_start = NULL,
      stop_request = NULL, finished_at = @now, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`)
  const failStmt = db.prepare<Fence & { error: string, now: number }>(`
    UPDATE jobs SET status = 'failed', error = @error, pid = NULL, pid_start = NULL, finished_at = @now, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`)
  const cancelRunningStmt = db.prepare<Fence & { now: number }>(`
    UPDATE jobs SET status = 'canceled', pid = NULL, pid_start = NULL, finished_at = @now, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`)
  // A release is not the job's fault: the attempt it used is given back (so is one the database kept from
  // working, with the reason kept in error).
  const releaseStmt = db.prepare<Fence & { error: string | null, now: number }>(`
    UPDATE jobs SET status = 'pending', attempts = max(attempts - 1, 0), error = coalesce(@error, error), worker = NULL,
      pid = NULL, pid_start = NULL, stop_request = NULL, stop_requested_at = NULL, heartbeat_at = NULL, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`)
  const requeueStmt = db.prepare<Fence & { error: string, now: number }>(`
    UPDATE jobs SET status = 'pending', error = @error, worker = NULL, pid = NULL, pid_start = NULL, heartbeat_at = NULL,
      stop_request = NULL, stop_requested_at = NULL, updated_at = @now
    WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'`)
  // ---- change feed (migrations/004): rows and tombstones by change number ----
  const changedStmt = db.prepare<{ after: number, limit: number }, JobRow>(
    'SELECT * FROM jobs WHERE seq > @after ORDER BY seq LIMIT @limit')
  const tombstonesStmt = db.prepare<{ after: number, limit: number }, { seq: number, job_id: number }>(
    'SELECT seq, job_id FROM job_tombstones WHERE seq > @after ORDER BY seq LIMIT @limit')
  const latestSeqStmt = db.prepare<[], number>('SELECT n FROM change_counter').pluck()
  const resumableStmt = db.prepare<[], number>('SELECT max(n - keep_tombstones, 0) FROM change_counter').pluck()
  // Counting stops at @cap rows: "more than the cap" is all a caller needs, without walking every change.
  const countRowsStmt = db.prepare<{ after: number, upTo: number, cap: number }, number>(
    'SELECT count(*) FROM (SELECT 1 FROM jobs WHERE seq > @after AND seq <= @upTo LIMIT @cap)').pluck()
  const countTombstonesStmt = db.prepare<{ after: number, upTo: number, cap: number }, number>(
    'SELECT count(*) FROM (SELECT 1 FROM job_tombstones WHERE seq > @after AND seq <= @upTo LIMIT @cap)').pluck()

  const ownedStmt = db.prepare<Fence, number>(
    "SELECT 1 FROM jobs WHERE id = @id AND lease = @lease AND worker = @worker AND status = 'running'").pluck()
  const fenced = <T>(changes: number, value: T): Fenced<T> => (changes === 1 ? { ok: true, value } : { ok: false })

  const insertTx = db.transaction((job: NewJob, maxPending: number, options: SubmitOptions): Submitted => {
    if (job.idempotencyKey !== null) {
      const existing = byKeyStmt.get(job.idempotencyKey)
      if (existing) {
        const differs = submitDifference(existing, job, options)
        if (differs !== null) {
          throw new ConflictError(`Idempotency-Key "${job.idempotencyKey}" was already used for job ${existing.id} with a different request (${differs} differs); use a new key for a new job`)
        }
        return { row: existing, created: false }
      }
    }
    const { c } = countPendingStmt.get() as { c: number }
    if (c >= maxPending) {
      throw new QueueFullError(`the queue is full: ${c} jobs are pending (MAX_PENDING=${maxPending}); retry later`, 5)
    }
    const inserted = insertStmt.get({
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
    // RETURNING shows the row before the change-counter trigger ran; read it back for its seq.
    return { row: getStmt.get(inserted.id) as JobRow, created: true }
  })

  const fence = (a: Attempt): Fence => ({ id: a.id, lease: a.lease, worker: a.worker })

  /** Applies what a stop request means once the worker has stopped, fenced on its attempt. */
  const settleStop = (attempt: Attempt, request: StopRequest): boolean => {
    const now = clock()
    const f = fence(attempt)
    if (request === 'release') return releaseStmt.run({ ...f, error: null, now }).changes === 1
    const changes = request === 'cancel'
      ? cancelRunningStmt.run({ ...f, now }).changes
      : failStmt.run({ ...f, error: 'timeout', now }).changes
    if (changes === 1) dropCheckpointStmt.run(attempt.id)
    return changes === 1
  }

  // Retention. A purge goes in batches, each its own transaction, so workers are never kept waiting on a long delete.
  const purgeCheckpointsStmt = db.prepare<{ before: number, limit: number }>(`
    DELETE FROM checkpoints WHERE job_id IN (SELECT id FROM jobs
      WHERE status IN ('done', 'failed', 'canceled') AND finished_at < @before ORDER BY id LIMIT @limit)`)
  const purgeJobsStmt = db.prepare<{ before: number, limit: number }>(`
    DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
      WHERE status IN ('done', 'failed', 'canceled') AND finished_at < @before ORDER BY id LIMIT @limit)`)
  const purgeTx = db.transaction((before: number, limit: number): number => {
    purgeCheckpointsStmt.run({ before, limit })
    return purgeJobsStmt.run({ before, limit }).changes
  })

  return {
    // ---- API side -----------------------------------------------------------------------------------------
    /** Inserts a pending job, or returns the job already stored under the same idempotency key. Throws
     *  QueueFullError when MAX_PENDING jobs are already waiting, ConflictError when the key was used for a
     *  different request (type, name, priority, time limit or parameters). */
    submit (job: NewJob, maxPending: number, options: SubmitOptions = {}): Submitted {
      return insertTx.immediate(job, maxPending, options)
    },

    get (id: number): JobRow | undefined {
      return getStmt.get(id)
    },

    /** A page of jobs, newest first, optionally of one status. */
    list (options: { status?: JobStatus, limit: number, cursor?: number }): JobPage {
      const cursor = options.cursor ?? Number.MAX_SAFE_INTEGER
      const limit = options.limit + 1
      const rows = options.status
        ? listByStatusStmt.all({ status: options.status, cursor, limit })
        : listStmt.all({ cursor, limit })
      const more = rows.length > options.limit
      if (more) rows.pop()
      return { jobs: rows, nextCursor: more ? rows[rows.length - 1].id : null }
    },

    /** Number of jobs in each status (every status present, zero when none). */
    counts (): Record<JobStatus, number> {
      const out: Record<JobStatus, number> = { pending: 0, running: 0, done: 0, failed: 0, canceled: 0 }
      for (const { status, c } of countsStmt.all()) out[status] = c
      return out
    },

    /** Cancels a pending job at once (with the checkpoint a released attempt left), or asks the worker of a
     *  running one to stop. */
    cancel (id: number): JobRow {
      return db.transaction(() => {
        const row = getStmt.get(id)
        if (!row) throw new NotFoundError(`job ${id} not found`)
        const now = clock()
        if (row.status === 'pending') {
          cancelPendingStmt.run({ id, now })
          dropCheckpointStmt.run(id)
        } else if (row.status === 'running') requestStopStmt.run({ id, request: 'cancel', now })
        else throw new ConflictError(`job ${id} is already ${row.status}`)
        return getStmt.get(id) as JobRow
      }).immediate()
    },

    /** Deletes a finished job and everything that belongs to it. */
    remove (id: number): void {
      db.transaction(() => {
        const row = getStmt.get(id)
        if (!row) throw new NotFoundError(`job ${id} not found`)
        if (deleteStmt.run(id).changes !== 1) throw new ConflictError(`job ${id} is ${row.status}; only finished jobs can be deleted`)
        dropCheckpointStmt.run(id)
      }).immediate()
    },

    /** A new pending job with the parameters of a failed or canceled one. */
    retry (id: number, maxPending: number): JobRow {
      const row = getStmt.get(id)
      if (!row) throw new NotFoundError(`job ${id} not found`)
      if (row.status !== 'failed' && row.status !== 'canceled') {
        throw new ConflictError(`job ${id} is ${row.status}; only failed or canceled jobs can be retried`)
      }
      return insertTx.immediate({
        type: row.type,
        name: row.name,
        params: JSON.parse(row.params),
        steps: row.steps,
        priority: row.priority,
        timeoutMs: row.timeout_ms,
        idempotencyKey: null,
        retryOf: row.id
      }, maxPending, {}).row
    },

    // ---- change feed ---------------------------------------------------------------------------------------
    /** Rows whose latest change comes after change number `after` (see migrations/004), in commit order. */
    changedAfter (after: number, limit = 500): JobRow[] {
      return changedStmt.all({ after, limit })
    },

    /** Changes after `after`, in commit order: a job's latest state, or the tombstone of a deleted job. */
    changesAfter (after: number, limit = 500): Change[] {
      const rows = changedStmt.all({ after, limit })
      const tombstones = tombstonesStmt.all({ after, limit })
      if (tombstones.length === 0) return rows.map((row) => ({ seq: row.seq, row }))
      const changes: Change[] = [
        ...rows.map((row) => ({ seq: row.seq, row })),
        ...tombstones.map((t) => ({ seq: t.seq, deleted: t.job_id }))
      ]
      return changes.sort((a, b) => a.seq - b.seq).slice(0, limit)
    },

    /** How many changes lie in (after, upTo], counting no further than `cap + 1`: above `cap` means "too many". */
    countChanges (after: number, upTo: number, cap: number): number {
      const rows = countRowsStmt.get({ after, upTo, cap: cap + 1 }) as number
      if (rows > cap) return rows
      return rows + (countTombstonesStmt.get({ after, upTo, cap: cap + 1 - rows }) as number)
    },

    /** The number of the latest change (0 for none). It only ever increases, whatever is deleted. */
    latestSeq (): number {
      return latestSeqStmt.get() as number
    },

    /** The oldest change number a client can resume from and still learn of every deletion since. */
    resumableAfter (): number {
      return resumableStmt.get() as number
    },

    // ---- scheduler side ----------------------------------------------------------------------------------
    /** Gives the next pending job (highest priority, then oldest) to the worker `worker`; undefined if none. */
    claimNext (worker: string): JobRow | undefined {
      return db.transaction(() => {
        const next = nextPendingStmt.get()
        return next ? claimStmt.get({ id: next.id, worker, now: clock() }) : undefined
      }).immediate()
    },

    running (): JobRow[] {
      return runningStmt.all()
    },

    /** Whether any job is waiting. */
    hasPending (): boolean {
      return anyPendingStmt.get() !== undefined
    },

    /** Asks the worker of a running job to stop; false if the job is not running. */
    requestStop (id: number, request: StopRequest): boolean {
      return requestStopStmt.run({ id, request, now: clock() }).changes === 1
    },

    /** The server's side of a stop its worker did not carry out in time (the worker was killed). */
    settleStop,

    /** An attempt whose worker is gone: back to pending (resuming from its checkpoint) or, with no attempt
     *  left, failed with the reason. Fenced: does nothing if the worker already ended the job. */
    markLost (attempt: Attempt, reason: string, maxAttempts: number): 'requeued' | 'failed' | 'gone' {
      return db.transaction(() => {
        const { id, lease, worker } = attempt
        const row = getStmt.get(id)
        if (!row || row.status !== 'running' || row.lease !== lease || row.worker !== worker) return 'gone' as const
        const now = clock()
        if (row.attempts >= maxAttempts) {
          failStmt.run({ id, lease, worker, error: `${reason} (attempt ${row.attempts} of ${maxAttempts})`, now })
          dropCheckpointStmt.run(id)
          return 'failed' as const
        }
        requeueStmt.run({ id, lease, worker, error: reason, now })
        return 'requeued' as const
      }).immediate()
    },

    /** An attempt that ended through no fault of the job (its worker found the database locked for too long):
     *  back to pending without using up an attempt, the reason kept in `error`. Fenced like markLost. */
    giveBack (attempt: Attempt, reason: string): boolean {
      return releaseStmt.run({ ...fence(attempt), error: reason, now: clock() }).changes === 1
    },

    /** Step of the saved checkpoint, if any (for logs and tests). */
    checkpointInfo (id: number): { step: number, saved_at: number } | undefined {
      return checkpointStepStmt.get(id)
    },

    // ---- worker side (every write fenced on the lease) ---------------------------------------------------
    /** The job the server assigned to worker `worker`, if any yet. */
    assigned (worker: string): JobRow | undefined {
      return assignedStmt.get(worker)
    },

    loadCheckpoint (id: number): Checkpoint | undefined {
      return loadCheckpointStmt.get(id)
    },

    /** Heartbeat with progress; returns the pending stop request (or null). The first one also records which
     *  process the worker is (`pid`, and `pidStart`, its start time), so the server never trusts or signals
     *  another process that later gets the same pid. */
    beat (attempt: Attempt, progress: { step: number, progress: number, pid?: number, pidStart?: number }): Fenced<StopRequest | null> {
      const row = beatStmt.get({ ...fence(attempt), pid: progress.pid ?? null, pidStart: progress.pidStart ?? null, step: progress.step, progress: progress.progress, now: clock() })
      return row ? { ok: true, value: row.stop_request } : { ok: false }
    },

    /** Heartbeat, progress and checkpoint in one transaction. */
    saveCheckpoint (attempt: Attempt, checkpoint: Checkpoint, progress: number): Fenced<StopRequest | null> {
      return db.transaction((): Fenced<StopRequest | null> => {
        const now = clock()
        const row = beatStmt.get({ ...fence(attempt), pid: null, pidStart: null, step: checkpoint.step, progress, now })
        if (!row) return { ok: false }
        saveCheckpointStmt.run({ id: attempt.id, lease: attempt.lease, step: checkpoint.step, state: checkpoint.state, now })
        return { ok: true, value: row.stop_request }
      }).immediate()
    },

    /** The job is done: result stored and checkpoint deleted, in one transaction. */
    complete (attempt: Attempt, result: object | (() => object)): Fenced<void> {
      return db.transaction(() => {
        // A result given as a function is produced here, once the attempt is known to hold the job, so whatever
        // it writes (a result matrix) commits with the job's end or not at all.
        if (typeof result === 'function') {
          if (!ownedStmt.get(fence(attempt))) return fenced(0, undefined)
          result = result()
        }
        const changes = doneStmt.run({ ...fence(attempt), result: JSON.stringify(result), now: clock() }).changes
        if (changes === 1) dropCheckpointStmt.run(attempt.id)
        return fenced(changes, undefined)
      }).immediate()
    },

    /** The job failed with `error`; no retry (the computation itself is at fault). */
    fail (attempt: Attempt, error: string): Fenced<void> {
      return db.transaction(() => {
        const changes = failStmt.run({ ...fence(attempt), error, now: clock() }).changes
        if (changes === 1) dropCheckpointStmt.run(attempt.id)
        return fenced(changes, undefined)
      }).immediate()
    },

    /** The worker stopped as requested: canceled, timed out, or released back to pending. */
    stopped (attempt: Attempt, request: StopRequest): Fenced<void> {
      return db.transaction(() => fenced(settleStop(attempt, request) ? 1 : 0, undefined)).immediate()
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
