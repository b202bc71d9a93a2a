/**
 * The built-in `lyapunov` job type: the top Lyapunov exponent of a product of random Gaussian matrices. The
 * maths lives in src/jobs/lyapunov.ts; this module is its definition under the public job-type contract, the same
 * one a user module in JOB_TYPES_DIR implements.
 */
import { defineJobType } from '../jobs/contract.js'
import { LyapunovRun, type LyapunovParams } from '../jobs/lyapunov.js'
import { threadLost } from '../jobs/threads/pool.js'
import { lazyCrypto } from '../lazy-crypto.js'

export default defineJobType<LyapunovParams>({
  name: 'lyapunov',
  title: 'Lyapunov exponent',
  description: 'Top Lyapunov exponent of a product of `steps` random n×n Gaussian matrices, compared with its exact value.',
  params: {
    type: 'object',
    properties: {
      n: { type: 'integer', title: 'Matrix size n', minimum: 1, maximum: 2000, examples: [200], description: 'matrix size n (n×n)' },
      steps: { type: 'integer', title: 'Steps', minimum: 1, maximum: 10000, examples: [100], description: 'number of matrix products' },
      seed: { type: 'integer', title: 'Seed', minimum: 0, maximum: 4294967295, description: 'uint32 PRNG seed; random when absent' }
    },
    required: ['n', 'steps'],
    additionalProperties: false
  },
  // The seed is drawn once, at submit, and stored: every attempt of the job then computes the same matrices.
  prepare: (params) => ({ ...params, seed: params.seed ?? lazyCrypto().randomInt(0, 2 ** 32) }),
  steps: (params) => params.steps,
  // Compute time and speed differ from run to run; every other field is bit-identical after any resume.
  measurements: ['elapsedMs', 'gflops'],
  create (params, checkpoint, ctx) {
    // The run reads its checkpoint as bytes; a Buffer view of the same memory, no copy.
    const from = checkpoint && {
      step: checkpoint.step,
      state: Buffer.from(checkpoint.state.buffer, checkpoint.state.byteOffset, checkpoint.state.byteLength)
    }
    // The product of a step is split over ctx.threads() compute threads; the bits do not depend on how many.
    return new LyapunovRun(params, from, { threads: ctx.threads, onThreadLost: threadLost(ctx.log) })
  }
})
