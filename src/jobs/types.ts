import type { Checkpoint } from './lyapunov.js'

export type { Checkpoint }

/** Names of the job types (src/jobs/registry.ts maps each to its code). Kept here so the HTTP layer can
 * validate a type without loading the maths. */
export const JOB_TYPE_NAMES = ['lyapunov'] as const

/** Where a job is in its life. `done`, `failed` and `canceled` are final. */
export type JobStatus = 'pending' | 'running' | 'done' | 'failed' | 'canceled'

/** All statuses, in lifecycle order. */
export const JOB_STATUSES: readonly JobStatus[] = ['pending', 'running', 'done', 'failed', 'canceled']

/** Statuses a job never leaves. */
export const FINAL_STATUSES: readonly JobStatus[] = ['done', 'failed', 'canceled']

/** Why the server asked a worker to stop: the user canceled, the server is shutting down, or time ran out. */
export type StopRequest = 'cancel' | 'release' | 'timeout'

/** Parameters every job type receives; `seed` is always set once stored. */
export interface JobParams {
  n: number
  steps: number
  seed: number
}

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
  priority: number
  timeoutMs: number | null
  idempotencyKey: string | null
  retryOf: number | null
}

/** A unit-of-work view of a running computation, which the worker drives and persists. */
export interface JobRun {
  /** Steps completed. */
  readonly step: number
  readonly steps: number
  readonly finished: boolean
  /** 0..1 of the whole job. */
  readonly fraction: number
  /** One bounded slice of work; a Promise when it ran on compute threads (the worker awaits it). */
  advance (): void | Promise<void>
  /** The state from which createRun continues bit for bit; callable between any two advance() calls. */
  checkpoint (): Checkpoint
  result (): object
  /** Ends what the run holds (compute threads); called however the run ends. */
  close? (): void | Promise<void>
}

/** What the worker gives a run it creates. */
export interface RunOptions {
  /** Compute threads the run may use for its next unit (≥ 1); may change between units. */
  threads?: () => number
}

/** A kind of job the server can run: how to start or resume it. Add one in src/jobs/registry.ts. */
export interface JobType {
  readonly name: string
  createRun (params: JobParams, from?: Checkpoint, options?: RunOptions): JobRun
}

/** Environment a worker is forked with (set by the scheduler). */
export const WORKER_ENV = {
  dbPath: 'NONSTOP_DB_PATH',
  heartbeatMs: 'NONSTOP_HEARTBEAT_MS',
  checkpointMs: 'NONSTOP_CHECKPOINT_MS',
  nice: 'NONSTOP_WORKER_NICE',
  /** Forces a job's compute threads (an integer ≥ 1) instead of its share of the cores; for measurements. */
  threads: 'NONSTOP_THREADS'
} as const
