/**
 * An example job type for nonstop: copy this file into your JOB_TYPES_DIR and restart the server.
 *
 * The dominant eigenvalue of a random symmetric positive-definite matrix A = GᵀG / n (G n×n with standard normal
 * entries drawn from `seed`), by power iteration: v ← Av / ‖Av‖, then λ = vᵀAv. The answer comes with the number a
 * user checks, the residual ‖Av − λv‖ / |λ|.
 *
 * What makes it a good nonstop job type:
 * - deterministic: A depends on `seed` alone, the start vector is fixed, so every run computes the same bits;
 * - small units: advance() does a few matrix-vector products (milliseconds), so heartbeats and cancels are prompt;
 * - a complete checkpoint: the current vector and the iteration count are all the state there is, so a run
 *   created from a checkpoint continues exactly as the run that took it would have.
 *
 * It imports nothing: the worker hands it mathjs as ctx.math.
 */

/** Matrix-vector products per unit of work. */
const PRODUCTS_PER_UNIT = 5

/** A seeded uint32 generator (mulberry32): the same seed gives the same sequence everywhere. */
function generator (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}

/** n×n standard normal numbers (Box–Muller), as rows. */
function gaussianRows (n, seed) {
  const next = generator(seed)
  const uniform = () => (next() + 1) / 4294967297 // in (0, 1): the logarithm stays finite
  const rows = []
  for (let i = 0; i < n; i++) {
    const row = new Array(n)
    for (let j = 0; j < n; j++) row[j] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform())
    rows.push(row)
  }
  return rows
}

class PowerIteration {
  constructor (params, checkpoint, math) {
    this.math = math
    this.n = params.n
    this.steps = params.iterations
    const g = math.matrix(gaussianRows(params.n, params.seed), 'dense', 'number')
    /** A = GᵀG / n, symmetric positive definite (almost surely). */
    this.a = math.divide(math.multiply(math.transpose(g), g), params.n)
    if (checkpoint) {
      // Layout: float64 [iteration, v₀ … vₙ₋₁].
      const bytes = checkpoint.state
      if (bytes.byteLength !== 8 * (params.n + 1)) {
        throw new Error(`checkpoint holds ${bytes.byteLength} bytes, expected ${8 * (params.n + 1)} for n=${params.n}`)
      }
      const data = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength))
      this.step = data[0]
      this.v = math.matrix(Array.from(data.subarray(1)), 'dense', 'number')
    } else {
      this.step = 0
      this.v = math.matrix(new Array(params.n).fill(1 / Math.sqrt(params.n)), 'dense', 'number')
    }
  }

  get fraction () { return this.step / this.steps }
  get finished () { return this.step >= this.steps }

  /** One unit: a few products v ← Av / ‖Av‖. */
  advance () {
    const { math } = this
    const until = Math.min(this.steps, this.step + PRODUCTS_PER_UNIT)
    while (this.step < until) {
      const av = math.multiply(this.a, this.v)
      this.v = math.divide(av, math.norm(av))
      this.step++
    }
  }

  checkpoint () {
    const data = new Float64Array(this.n + 1)
    data[0] = this.step
    data.set(this.v.valueOf(), 1)
    return { step: this.step, state: new Uint8Array(data.buffer) }
  }

  result () {
    const { math } = this
    const av = math.multiply(this.a, this.v)
    const eigenvalue = math.dot(this.v, av)
    const residual = math.norm(math.subtract(av, math.multiply(eigenvalue, this.v))) / Math.abs(eigenvalue)
    return { eigenvalue, residual, iterations: this.step, n: this.n }
  }
}

export default {
  name: 'power-iteration',
  title: 'Dominant eigenvalue (power iteration)',
  description: 'Largest eigenvalue of a seeded random positive-definite matrix GᵀG/n by power iteration, with its residual ‖Av − λv‖/|λ|.',
  params: {
    type: 'object',
    properties: {
      n: { type: 'integer', minimum: 2, maximum: 1000, default: 200, description: 'matrix size' },
      iterations: { type: 'integer', minimum: 1, maximum: 1000000, default: 500, description: 'matrix-vector products' },
      seed: { type: 'integer', minimum: 0, maximum: 4294967295, description: 'seed of G; random when absent' }
    },
    required: ['n', 'iterations'],
    additionalProperties: false
  },
  /** Runs in the server at submit: the seed is drawn once and stored, so every attempt builds the same A. */
  prepare: (params) => ({ ...params, seed: params.seed ?? Math.floor(Math.random() * 4294967296) }),
  /** Units shown as the job's `steps`. */
  steps: (params) => params.iterations,
  create: (params, checkpoint, ctx) => new PowerIteration(params, checkpoint, ctx.math)
}
