/**
 * The asynchronous job store: what the server, the scheduler and the workers need from the database, as
 * Promise-returning methods, so that SQLite (src/store/sqlite.ts, the synchronous store behind it) and
 * PostgreSQL (src/store/postgres.ts) can both provide it. The same tests run against both
 * (test/fixtures/store-conformance.ts).
 *
 * The server, the scheduler and the workers use only this interface; src/store/open.ts picks the implementation
 * from the configuration (DATABASE_URL: PostgreSQL; otherwise SQLite at DB_PATH).
 *
 * Rules every implementation keeps:
 * - job ids are never handed out twice, even after the newest job is deleted;
 * - a claim gives a job to one worker token with a new lease, once per lease, however many claimers race;
 * - every worker write matches (id, lease, worker token, status 'running') and reports `{ ok: false }`, having
 *   changed nothing, when that attempt no longer holds the job;
 * - times that decide about liveness (heartbeat age, run time, stop grace) are measured with the database's
 *   clock where the database has one that every node shares (PostgreSQL's now()), never a node's clock;
 * - the change feed delivers every change after a cursor, in cursor order, once; event ids are opaque strings.
 */
import type { ResultContext } from '../jobs/contract.js'
import type { JobEventRow, StopRequester } from '../jobs/history.js'
import type { JobFilter } from '../jobs/job-filter.js'
import type { Attempt, BulkAction, BulkBatch, Fenced, JobPage, Submitted, SubmitOptions, Throughput } from '../jobs/store.js'
import type { Checkpoint, JobRow, JobStatus, NewJob, StopRequest } from '../jobs/types.js'

export type { Attempt, BulkAction, BulkBatch, Fenced, JobEventRow, JobFilter, JobPage, StopRequester, Submitted, SubmitOptions, Throughput }

/** A node as it registers. */
export interface NewNode {
  node_id: string
  boot_id: string
  pid: number
  host: string
  /** Its LEASE_MS; absent: unknown (the sweeping node's own lease applies to its jobs). */
  lease_ms?: number
}

/** One node (one server process) sharing the database, as the nodes table holds it. Times are epoch ms. */
export interface NodeRow {
  /** Stable per machine and port (NODE_ID, or host:port); a restarted server keeps it and adopts its workers. */
  node_id: string
  /** The machine's boot id (/proc/sys/kernel/random/boot_id): /proc is trusted only for workers of this boot. */
  boot_id: string
  pid: number
  host: string
  started_at: number
  heartbeat_at: number
  /** Since its last heartbeat by the database's clock (ms). */
  silent_ms: number
  /** Jobs running on it (claimed by its workers). */
  running: number
  /** Its LEASE_MS (null: registered by an older server): how long its workers' silence is waited for. */
  lease_ms: number | null
}

/** One entry of the change feed: a job's state as of the read (at least as new as the change), or a deletion. */
export type FeedChange =
  | { eventId: string, row: JobRow, deleted?: undefined }
  | { eventId: string, deleted: number, row?: undefined }

/** A running job with its ages, each measured with the database's clock. */
export interface RunningJob {
  row: JobRow
  /** Since its last heartbeat (ms); null when it has none. */
  silentMs: number | null
  /** Since its first start (ms); null when it never started. */
  runMs: number | null
  /** Since its stop request (ms); null when none is pending. */
  stopWaitMs: number | null
}

/** Progress a heartbeat carries; the first one also records which process the worker is. */
export interface BeatProgress { step: number, progress: number, pid?: number, pidStart?: number }

/** Most matrices one result may store (PostgreSQL reserves their ids before the result is built). */
export const MAX_RESULT_MATRICES = 8

/** Outcome of declaring an attempt lost; `alive` when its heartbeat was no longer older than asked. */
export type LostOutcome = 'requeued' | 'failed' | 'gone' | 'alive'

export interface AsyncJobStore {
  /** Which database this is ('sqlite' or 'postgres'), for logs and /metrics. */
  readonly kind: 'sqlite' | 'postgres'

  // ---- API side -------------------------------------------------------------------------------------------
  /** Inserts a pending job, or returns the job already stored under the same idempotency key. Rejects with
   *  QueueFullError when `maxPending` jobs wait, ConflictError when the key was used for a different request. */
  submit (job: NewJob, maxPending: number, options?: SubmitOptions): Promise<Submitted>
  get (id: number): Promise<JobRow | undefined>
  /** A page of jobs, newest first, optionally of one status and matching a filter. */
  list (options: { status?: JobStatus, filter?: JobFilter, limit: number, cursor?: number }): Promise<JobPage>
  /** Number of jobs in each status (every status present), of those matching the filter. */
  counts (filter?: JobFilter): Promise<Record<JobStatus, number>>
  /** A job's history, oldest first (empty for an unknown job). */
  events (id: number): Promise<JobEventRow[]>
  /** The filter with its created range resolved to a run of ids (filter.createdIds), for an action over many pages. */
  resolveCreated (filter: JobFilter): Promise<JobFilter>
  /** One batch of a bulk action over the jobs matching `filter` with id below `cursor` (0: from the newest). */
  bulkBatch (action: BulkAction, filter: JobFilter, cursor: number, batch: number, maxPending: number): Promise<BulkBatch>
  /** Jobs done and failed per minute over the last `minutes`. */
  throughput (minutes: number): Promise<Throughput>
  /** Cancels a pending job at once (dropping its checkpoint), or asks the worker of a running one to stop.
   *  NotFoundError, or ConflictError when the job is already finished. */
  cancel (id: number): Promise<JobRow>
  /** Deletes a finished job with its checkpoint; leaves a tombstone in the change feed. */
  remove (id: number): Promise<void>
  /** A new pending job with the parameters of a failed or canceled one. */
  retry (id: number, maxPending: number): Promise<JobRow>

  // ---- change feed ----------------------------------------------------------------------------------------
  /** The changes after `eventId` (null: from the oldest kept), in feed order, at most `limit`. A job changed
   *  several times within one page is given once, at its latest state; a job deleted since is given as its
   *  tombstone only. Every change is eventually given once: a change not yet readable (its transaction still
   *  open) holds back the feed rather than being skipped. */
  changesAfter (eventId: string | null, limit?: number): Promise<FeedChange[]>
  /** An event id to start a live stream from: every change committed after this call comes after it. */
  feedHead (): Promise<string>
  /** Whether a client that last saw `eventId` can resume from it and be told of every change (deletions
   *  included) in at most `maxReplay` changes; false for an id this store never gave. */
  canResume (eventId: string, maxReplay: number): Promise<boolean>

  // ---- scheduler side ------------------------------------------------------------------------------------
  /** Gives the next pending job (highest priority, then oldest) to worker token `worker` with a new lease;
   *  `pid` (the worker's process), `node` (the claiming node's id) and `leaseMs` (the LEASE_MS the worker was
   *  forked with) are recorded with it. */
  claimNext (worker: string, pid?: number, node?: string, leaseMs?: number): Promise<JobRow | undefined>
  /** Running jobs. */
  running (): Promise<JobRow[]>
  /** Running jobs with their heartbeat, run and stop ages by the database's clock. */
  runningWithAges (): Promise<RunningJob[]>
  hasPending (): Promise<boolean>
  /** Asks the worker of a running job to stop; false if the job is not running (or a cancel/timeout is pending). */
  requestStop (id: number, request: StopRequest, by?: StopRequester): Promise<boolean>
  /** The server's side of a stop its worker did not carry out, fenced on the attempt; `why` goes to the history. */
  settleStop (attempt: Attempt, request: StopRequest, why?: string): Promise<boolean>
  /** The attempt's worker is gone: back to pending, or failed when `maxAttempts` are used up. Fenced; with
   *  `ifSilentForMs`, only if the heartbeat is still older than that by the database's clock ('alive' otherwise):
   *  a worker that beat in the meantime keeps its job. */
  markLost (attempt: Attempt, reason: string, maxAttempts: number, ifSilentForMs?: number): Promise<LostOutcome>
  /** Back to pending without using up an attempt, the reason kept in `error`. Fenced. */
  giveBack (attempt: Attempt, reason: string): Promise<boolean>
  /** Step of the saved checkpoint, if any. */
  checkpointInfo (id: number): Promise<{ step: number, saved_at: number } | undefined>

  // ---- worker side (every write fenced on the attempt) ------------------------------------------------------
  /** The job claimed for worker token `worker`, if any yet. */
  assigned (worker: string): Promise<JobRow | undefined>
  loadCheckpoint (id: number): Promise<Checkpoint | undefined>
  /** The worker's first heartbeat: records its process and the history's 'started' event. */
  begin (attempt: Attempt, progress: BeatProgress & { pid: number }): Promise<Fenced<StopRequest | null>>
  /** Heartbeat with progress; the pending stop request (or null). */
  beat (attempt: Attempt, progress: BeatProgress): Promise<Fenced<StopRequest | null>>
  /** Heartbeat, progress and checkpoint in one transaction. */
  saveCheckpoint (attempt: Attempt, checkpoint: Checkpoint, progress: number): Promise<Fenced<StopRequest | null>>
  /** Done: result stored, checkpoint deleted, in one transaction. */
  complete (attempt: Attempt, result: object): Promise<Fenced<void>>
  /** Done, with a result built once the attempt is known to hold the job (a job type's result()): the matrices it
   *  stores through `out` commit with the job's end or not at all, and a build that throws rejects having stored
   *  nothing. `{ ok: false }` when the attempt no longer holds the job (without calling `build` when that is known
   *  first). At most MAX_RESULT_MATRICES matrices per result. SQLite builds inside the ending transaction (nothing else can write
   *  meanwhile); PostgreSQL builds just before it, since a session idle in a transaction is ended after half a
   *  lease, and re-checks the fence under the row lock. */
  completeWith (attempt: Attempt, build: (out: ResultContext) => object): Promise<Fenced<object>>
  /** Failed with `error` (no retry), checkpoint deleted. */
  fail (attempt: Attempt, error: string): Promise<Fenced<void>>
  /** The worker stopped as requested: canceled, timed out, or released back to pending. */
  stopped (attempt: Attempt, request: StopRequest): Promise<Fenced<void>>

  // ---- operations ------------------------------------------------------------------------------------------
  /** Deletes finished jobs that finished before `before` (epoch ms) with their checkpoints; how many. */
  purgeFinishedBefore (before: number, batch?: number): Promise<number>
  /** Deletes all but the newest `keep` change-feed entries every reader has seen; how many (0 where the store
   *  keeps no separate log to prune). */
  pruneFeed (keep: number): Promise<number>
  /** Whether this caller may run the periodic task `name` now: true for one caller per `intervalMs` across every
   *  node sharing the database (a compare-and-set on the database's clock). */
  claimPeriodic (name: string, intervalMs: number): Promise<boolean>

  // ---- nodes -----------------------------------------------------------------------------------------------
  /** Records this node as up (insert or refresh: a restarted node keeps its id and gets the new pid and boot). */
  registerNode (node: NewNode): Promise<void>
  /** The node's heartbeat; false when its row is gone (another process took the id). */
  beatNode (nodeId: string, pid: number): Promise<boolean>
  /** Every node known, newest heartbeat first. */
  nodes (): Promise<NodeRow[]>
  /** Removes the node's row at a clean stop. */
  leaveNode (nodeId: string, pid: number): Promise<void>
  /** Removes the rows of nodes silent for longer than `silentForMs` (database clock) that run no job: nodes that
   *  crashed or were renamed and will not come back. How many. */
  forgetNodes (silentForMs: number): Promise<number>

  /** Releases what the store holds (a pool); the synchronous SQLite store's database stays its owner's. */
  close (): Promise<void>
}
