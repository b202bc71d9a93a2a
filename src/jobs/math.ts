import { createRequire } from 'node:module'
import type { MathJsInstance, Matrix } from 'mathjs'

/**
 * mathjs, loaded from its single-file bundle. The package's main entry pulls in hundreds of ES modules and
 * costs a new process about two seconds; the bundle is the same library and loads in well under 0.2 s, which
 * is what lets a forked worker boot quickly.
 */
export const math: MathJsInstance = createRequire(import.meta.url)('mathjs/lib/browser/math.js')

/** mathjs's dense matrix class; `new DenseMatrix({ data, size, datatype })` adopts `data` without copying it. */
export const DenseMatrix = (math as unknown as {
  DenseMatrix: new (init: { data: number[][], size: [number, number], datatype: 'number' }) => Matrix
}).DenseMatrix
