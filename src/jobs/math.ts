import type { MathJsInstance, Matrix } from 'mathjs'
import { fullMath } from './math-core.js'

/**
 * mathjs, loaded from its single-file bundle. The package's main entry pulls in hundreds of ES modules and
 * costs a new process about two seconds; the bundle is the same library and loads in well under 0.2 s. A worker
 * does not import this module: its product uses the smaller core (./math-core.ts), and a job type's
 * `JobContext.math` loads the full bundle on first use.
 */
export const math: MathJsInstance = fullMath()

/** mathjs's dense matrix class; `new DenseMatrix({ data, size, datatype })` adopts `data` without copying it. */
export const DenseMatrix = (math as unknown as {
  DenseMatrix: new (init: { data: number[][], size: [number, number], datatype: 'number' }) => Matrix
}).DenseMatrix
