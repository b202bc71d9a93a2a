import type { Checkpoint } from './lyapunov.js'

export type { Checkpoint }

/** Where a job is in its life. `done`, `failed` and `canceled` are final. */
export type JobStatus = 'pending' | 'running' | 'done' | 'failed' | 'canceled'

/** All statuses, in lifecycle order. */
export const JOB_STATUSES: readonly JobStatus[] = ['pending', 'running', 'done', 'failed', 'canceled']

/** Statuses a job never leaves. */
export const FINAL_STATUSES: readonly JobStatus[] = ['done', 'failed', 'canceled']

/** Why the server asked a worker to stop: the user canceled, the server is shutting down, or time ran out. */
export type StopRequest = 'cancel' | 'release' | 'timeout'

/** Parameters of a job, as its type's schema accepted them and its prepare() completed them. */
export type JobParams = Record<string, unknown>

/** A row of the `jobs` table, as stored (snake_case, epoch ms, JSON as text). */
export interface JobRow {
  id: number
  type: string
  name: string | null
  /** JSON of JobParams. */
  params: string
  priority: number
  status: JobStatus
  /** Steps completed. */
  step: number
  steps: number
  /** 0..100. */
  progress: number
  /** JSON of the job type's result, when done. */
  result: string | null
  /** Why the job failed, or what the last lost attempt died of. */
  error: string | null
  /** Attempts charged so far. */
  attempts: number
  /** Fencing token: incremented at every claim; a worker writes only while the row still has its lease. */
  lease: number
  /** Token of the worker process holding the lease. */
  worker: string | null
  pid: number | null
  /** Start time of that pid in clock ticks since boot (/proc/<pid>/stat field 22), written with the first
   *  heartbeat: which process the pid is. Null before it, or where /proc is missing. */
  pid_start: number | null
  /** Id of the node whose worker holds the current attempt (see the nodes table); null when none or unknown. */
  node: string | null
  /** LEASE_MS of the node that claimed the current attempt, which its worker fences itself on: how long the attempt's
   *  silence is waited for. Null when claimed by an older server (its node's recorded lease applies). */
  lease_ms: number | null
  /** The attempt (`lease`) that `lease_ms` was recorded for: `lease_ms` counts only while the two are equal (a claim
   *  by an older server, in a rolling upgrade, moves `lease` on and leaves `lease_ms` as it was). */
  lease_ms_lease: number | null
  heartbeat_at: number | null
  stop_request: StopRequest | null
  stop_requested_at: number | null
  /** Run-time limit in ms, or null. */
  timeout_ms: number | null
  idempotency_key: string | null
  /** Id of the job this one is a retry of. */
  retry_of: number | null
  created_at: number
  started_at: number | null
  finished_at: number | null
  updated_at: number
  /** Change counter: the number of the latest change to this row, in commit order across all jobs. */
  seq: number
}

/** A job as the API shows it (camelCase, ISO dates, JSON parsed). */
export interface Job {
  id: number
  type: string
  name: string | null
  status: JobStatus
  progress: number
  step: number
  steps: number
  params: JobParams
  priority: number
  result: Record<string, unknown> | null
  error: string | null
  attempts: number
  pid: number | null
  timeoutSeconds: number | null
  retryOf: number | null
  cancelRequested: boolean
  createdAt: string
  startedAt: string | null
  finishedAt: string | null
  updatedAt: string
  heartbeatAt: string | null
  /** Grows with every change of the job; of two states of one job, the higher version is the newer. */
  version: number
}

/** What a submission carries once validated; the store assigns everything else. */
export interface NewJob {
  type: string
  name: string | null
  params: JobParams
  /** Units of work, from the type's steps(params). */
  steps: number
  priority: number
  timeoutMs: number | null
  idempotencyKey: string | null
  retryOf: number | null
}

/** Environment a worker is forked with (set by the scheduler). */
export const WORKER_ENV = {
  dbPath: 'NONSTOP_DB_PATH',
  /** PostgreSQL connection string when the server runs on PostgreSQL (then NONSTOP_DB_PATH is unused). */
  databaseUrl: 'NONSTOP_DATABASE_URL',
  /** The lease (ms): a worker that could not write a heartbeat for nearly this long stops computing and exits. */
  leaseMs: 'NONSTOP_LEASE_MS',
  heartbeatMs: 'NONSTOP_HEARTBEAT_MS',
  checkpointMs: 'NONSTOP_CHECKPOINT_MS',
  nice: 'NONSTOP_WORKER_NICE',
  /** JSON map: user job type name → module path (the server's JOB_TYPES_DIR, as loaded at its start). */
  jobTypeModules: 'NONSTOP_JOB_TYPE_MODULES',
  /** Forces a job's compute threads (an integer ≥ 1) instead of its share of the cores; for measurements. */
  threads: 'NONSTOP_THREADS'
} as const
