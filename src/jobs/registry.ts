import { LyapunovRun } from './lyapunov.js'
import type { JOB_TYPE_NAMES, JobType } from './types.js'

/** The job types this server runs, by name. A new type is a module with a JobRun and a line here. */
export const jobTypes: Readonly<Record<(typeof JOB_TYPE_NAMES)[number], JobType>> = {
  lyapunov: { name: 'lyapunov', createRun: (params, from, options) => new LyapunovRun(params, from, options) }
}
