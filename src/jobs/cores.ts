/**
 * How the cores are shared between running jobs: a pure policy, no I/O.
 *
 * A lone job gets every core. Several running jobs split the cores evenly, the jobs claimed first (lowest id)
 * taking one more when the cores do not divide evenly, and every job keeps at least one thread. So the compute
 * threads of all jobs add up to the core count whenever at most that many jobs run (and to the number of jobs
 * when more run: each job's own thread is never taken away). A job's share is re-read between units of work,
 * so it grows when the others finish and shrinks when new ones start.
 */
import { availableParallelism } from 'node:os'

/** Compute threads the job `id` may use, given the ids of every running job (its own included) and the cores. */
export function threadShare (id: number, runningIds: readonly number[], cores: number): number {
  const ids = [...new Set(runningIds.includes(id) ? runningIds : [...runningIds, id])].sort((a, b) => a - b)
  const whole = Math.max(1, Math.floor(cores))
  const base = Math.floor(whole / ids.length)
  if (base < 1) return 1
  return base + (ids.indexOf(id) < whole % ids.length ? 1 : 0)
}

/** Cores this process may run on. */
export function coreCount (): number {
  return availableParallelism()
}
