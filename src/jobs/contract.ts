/**
 * The job-type contract: what a computation provides to run under nonstop's guarantees (its own worker process,
 * heartbeats, checkpoints, bit-identical resume after any kill). Built-in types and the modules of a user's
 * JOB_TYPES_DIR implement exactly this; there is no private shortcut.
 *
 *   export default defineJobType({
 *     name: 'my-type', title: '…', description: '…',
 *     params: { type: 'object', properties: { … }, required: [ … ], additionalProperties: false },
 *     create (params, checkpoint, ctx) { return new MyRun(params, checkpoint, ctx) }
 *   })
 *
 * The worker drives a run: advance() one unit at a time (well under a second: the heartbeat waits for it),
 * checkpoint() every CHECKPOINT_MS, result() once `finished`. A run created from a checkpoint must continue
 * bit for bit as the run that took it would have.
 */
import type { MathJsInstance } from 'mathjs'

/** What a run saves to be resumed from: the units it had done, and its state as bytes. */
export interface Checkpoint {
  /** Units of work done when the checkpoint was taken (logs say "resumed from step k"). */
  step: number
  /** Everything the run needs to continue bit for bit. */
  state: Uint8Array
}

/** A matrix stored by the server: row-major float64. */
export interface StoredMatrix {
  id: number
  name: string
  rows: number
  cols: number
  /** rows × cols numbers, row after row. */
  data: Float64Array
}

/** A matrix a run hands back with its result, stored as owned by the job. */
export interface NewMatrix {
  name: string
  rows: number
  cols: number
  data: Float64Array
}

/** Log methods a run may use; lines carry the job's id. */
export interface JobLog {
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
}

/** What the worker gives a run. */
export interface JobContext {
  /** The mathjs instance of this process (user modules need not resolve their own). */
  readonly math: MathJsInstance
  /** Reads a stored matrix; throws when there is none with that id. */
  loadMatrix (id: number): StoredMatrix
  /** Compute threads this run may use for its next unit (≥ 1); the scheduler may change it between units. */
  threads (): number
  readonly log: JobLog
}

/** What result() may use: writes that land in the same transaction as the job's result, or not at all. */
export interface ResultContext {
  /** Stores a matrix owned by this job; returns its id. */
  storeMatrix (matrix: NewMatrix): number
}

/** A computation in progress, driven by its worker. */
export interface JobRun {
  /** Units of work done. */
  readonly step: number
  /** Units of work in all (for display; `fraction` is what progress shows). */
  readonly steps: number
  /** 0..1 of the whole job; never goes back. */
  readonly fraction: number
  readonly finished: boolean
  /** One bounded unit of work (well under a second). */
  advance (): void | Promise<void>
  /** The state from which create() continues bit for bit; callable between any two advance() calls. */
  checkpoint (): Checkpoint
  /** The job's answer, JSON-serializable; called once, when finished. */
  result (out: ResultContext): Record<string, unknown>
  /** Releases what the run holds (threads, buffers); called however the run ends. */
  close? (): void | Promise<void>
}

/** What the server may look up while checking a submission (cheap, read-only). */
export interface SubmitContext {
  /** Shape of a stored matrix, or undefined if there is none with that id. */
  matrix (id: number): { rows: number, cols: number } | undefined
  /** The largest matrix this server stores, in bytes of float64 data (MAX_MATRIX_BYTES), when it has a limit. */
  readonly maxMatrixBytes?: number
}

/** A kind of job: its name, its form, how to start or resume it. */
export interface JobTypeDefinition<P = Record<string, unknown>> {
  /** `^[a-z][a-z0-9-]{0,39}$`; what clients send as `type`. */
  readonly name: string
  readonly title: string
  readonly description: string
  /** JSON Schema of `params` (type: 'object'); submissions are validated with it, without coercion. */
  readonly params: Record<string, unknown>
  /** Fills what the schema cannot default (e.g. a random seed), so the stored params replay exactly. Server side. */
  prepare? (params: P): P
  /** Checks beyond the schema, at submit, in the server process: an error message (→ 400) or undefined. */
  check? (params: P, ctx: SubmitContext): string | undefined
  /** Units of work of a job with these params, shown as `steps` before it starts (default 1). */
  steps? (params: P): number
  /**
   * Top-level fields of the result that measure the run (time taken, speed) rather than compute its answer; the
   * conformance kit leaves them out when it checks that a resumed run ends bit-identical.
   */
  readonly measurements?: readonly string[]
  /** Starts a run, or resumes one from its checkpoint. Runs in the worker process only. */
  create (params: P, checkpoint: Checkpoint | undefined, ctx: JobContext): JobRun | Promise<JobRun>
}

/** Identity at run time; gives a type's author the contract's types and checks. */
export function defineJobType<P = Record<string, unknown>> (definition: JobTypeDefinition<P>): JobTypeDefinition<P> {
  return definition
}

/** What a job type's `name` must look like. */
export const JOB_TYPE_NAME = /^[a-z][a-z0-9-]{0,39}$/
