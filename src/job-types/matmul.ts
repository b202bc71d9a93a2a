/** matmul: the chain product M1·M2·…·Mk of stored matrices, left to right, stored as the job's result matrix. */
import { defineJobType } from '../jobs/contract.js'
import { type ChainSpec, ChainRun } from './chain.js'

/** Parameters of a matmul job. */
export interface MatmulParams {
  /** Ids of stored matrices, 2..32, multiplied left to right. */
  matrices: number[]
}

/** The chain a matmul job computes. */
export function matmulChain (params: MatmulParams): ChainSpec {
  const ids = params.matrices
  return {
    first: ids[0],
    products: ids.slice(1).map((id, k) => ({
      right: id,
      label: `matmul product ${k + 1} of ${ids.length - 1} (matrices[0..${k}] × matrices[${k + 1}], matrix ${id})`
    })),
    resultName: `matmul(${ids.join(',')})`
  }
}

export default defineJobType<MatmulParams>({
  name: 'matmul',
  measurements: ['elapsedMs', 'gflops'],
  title: 'Matrix chain product',
  description: 'M1·M2·…·Mk of stored matrices (upload them under Matrices), left to right; the product is stored as a new matrix owned by the job.',
  params: {
    type: 'object',
    properties: {
      matrices: {
        type: 'array',
        description: 'ids of stored matrices (GET /api/matrices), multiplied left to right',
        items: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER, 'x-matrix-id': true },
        minItems: 2,
        maxItems: 32
      }
    },
    required: ['matrices'],
    additionalProperties: false
  },

  check (params, ctx) {
    const shapes = []
    for (const [k, id] of params.matrices.entries()) {
      const shape = ctx.matrix(id)
      if (!shape) return `matrices[${k}]: matrix ${id} not found`
      shapes.push(shape)
    }
    for (let k = 1; k < shapes.length; k++) {
      const a = shapes[k - 1]
      const b = shapes[k]
      if (a.cols !== b.rows) {
        const ids = params.matrices
        return `matrices[${k - 1}] (matrix ${ids[k - 1]}, ${a.rows}×${a.cols}) and matrices[${k}] (matrix ${ids[k]}, ${b.rows}×${b.cols}) do not fit: ${a.cols} columns against ${b.rows} rows`
      }
      // Every partial product is held by the worker and the last one is stored: none may exceed what an upload may.
      const bytes = shapes[0].rows * b.cols * 8
      if (ctx.maxMatrixBytes !== undefined && bytes > ctx.maxMatrixBytes) {
        return `the product of matrices[0..${k}] would be ${shapes[0].rows}×${b.cols} (${bytes} bytes), beyond the largest matrix stored (MAX_MATRIX_BYTES = ${ctx.maxMatrixBytes})`
      }
    }
    return undefined
  },

  steps: (params) => params.matrices.length - 1,

  create: (params, checkpoint, ctx) => new ChainRun(matmulChain(params), checkpoint, ctx)
})
