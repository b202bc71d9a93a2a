/** matpow: A^k of a stored square matrix by repeated squaring, stored as the job's result matrix. */
import { defineJobType } from '../jobs/contract.js'
import { type ChainProduct, type ChainSpec, ChainRun } from './chain.js'

/** Parameters of a matpow job. */
export interface MatpowParams {
  /** Id of a stored square matrix. */
  matrix: number
  /** k, 1 ≤ k ≤ 2³¹−1. */
  exponent: number
}

/** Largest exponent accepted. */
export const MAX_EXPONENT = 2 ** 31 - 1

/**
 * The products of A^k, reading k's bits from the highest: square for every further bit, and multiply by A where
 * the bit is 1. (bits − 1) squarings and (ones − 1) multiplications: at most 60 products for k < 2³¹.
 */
export function matpowChain (params: MatpowParams): ChainSpec {
  const bits = params.exponent.toString(2)
  const plan: Array<{ right: 'self' | 'base', from: number, to: number }> = []
  let e = 1
  for (const bit of bits.slice(1)) {
    plan.push({ right: 'self', from: e, to: 2 * e })
    e *= 2
    if (bit === '1') {
      plan.push({ right: 'base', from: e, to: e + 1 })
      e += 1
    }
  }
  const products: ChainProduct[] = plan.map((p, k) => ({
    right: p.right === 'self' ? 'self' : params.matrix,
    label: `matpow product ${k + 1} of ${plan.length} (A^${p.to} = ${p.right === 'self' ? `A^${p.from}·A^${p.from}` : `A^${p.from}·A`})`
  }))
  return { first: params.matrix, products, resultName: `matpow(${params.matrix},${params.exponent})` }
}

export default defineJobType<MatpowParams>({
  name: 'matpow',
  measurements: ['elapsedMs', 'gflops'],
  title: 'Matrix power',
  description: 'A^k of a stored square matrix by repeated squaring (at most 60 products); the power is stored as a new matrix owned by the job.',
  params: {
    type: 'object',
    properties: {
      matrix: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER, 'x-matrix-id': true, description: 'id of a stored square matrix (GET /api/matrices)' },
      exponent: { type: 'integer', minimum: 1, maximum: MAX_EXPONENT, description: 'k, from 1 to 2147483647' }
    },
    required: ['matrix', 'exponent'],
    additionalProperties: false
  },

  check (params, ctx) {
    const shape = ctx.matrix(params.matrix)
    if (!shape) return `matrix ${params.matrix} not found`
    if (shape.rows !== shape.cols) return `matrix ${params.matrix} is ${shape.rows}×${shape.cols}; a power needs a square matrix`
    return undefined
  },

  steps: (params) => Math.max(1, matpowChain(params).products.length),

  create: (params, checkpoint, ctx) => new ChainRun(matpowChain(params), checkpoint, ctx)
})
