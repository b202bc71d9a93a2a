/**
 * What a worker hands a job type's run (JobContext) and its result() (ResultContext). Matrices are reached only
 * through these functions: a run reads its inputs from the matrix store, and the matrices its result() stores
 * are inserted inside the fenced transaction that marks the job done (src/jobs/store.ts `complete`), so a worker
 * that has lost its job leaves no matrix behind.
 */
import type { MatrixStore } from '../matrices/store.js'
import type { JobContext, JobLog, ResultContext } from './contract.js'
import { fullMath } from './math-core.js'

/** The context of one run in this process. */
export function createJobContext (log: JobLog, matrices: Pick<MatrixStore, 'load'>, threads: () => number = () => 1): JobContext {
  // The full mathjs is loaded only for a job type that uses it (lyapunov's product does not): it costs a new
  // worker ~0.2 s of CPU.
  return { get math () { return fullMath() }, loadMatrix: (id) => matrices.load(id), threads, log }
}

/** The context result() gets: matrices it stores belong to job `jobId` (deleted with it). */
export function createResultContext (jobId: number, matrices: Pick<MatrixStore, 'insertOwned'>): ResultContext {
  return { storeMatrix: (m) => matrices.insertOwned(jobId, m) }
}
