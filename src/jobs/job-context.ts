/**
 * What a worker hands a job type's run (JobContext) and its result() (ResultContext). Matrices are reached only
 * through these functions, so the matrix store can be wired in here without touching any job type.
 */
import type { JobContext, JobLog, ResultContext, StoredMatrix } from './contract.js'
import { math } from './math.js'

/** Reads stored matrix `id`. No matrix store exists yet: every id is unknown. */
export function loadStoredMatrix (id: number): StoredMatrix {
  throw new Error(`no stored matrix with id ${id}`)
}

/** Stores a matrix owned by the job. No matrix store exists yet. */
export function storeJobMatrix (): number {
  throw new Error('this server cannot store matrices yet')
}

/** The context of one run in this process. */
export function createJobContext (log: JobLog): JobContext {
  return { math, loadMatrix: loadStoredMatrix, threads: () => 1, log }
}

/** The context result() gets. */
export function createResultContext (): ResultContext {
  return { storeMatrix: storeJobMatrix }
}
