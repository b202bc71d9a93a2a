import type { Matrix } from 'mathjs'
import { mathCore } from './math-core.js'
import { monotonicMs } from './clock.js'
import { MAX_THREADS, type SharedBuffers, ThreadPool } from './threads/pool.js'
import { PANEL_WIDTH, type ProductBuffers, ProductKernel } from './threads/product.js'

/** Parameters of the built-in job: n×n Gaussian matrices, `steps` products, PRNG seed. */
export interface LyapunovParams {
  /** Matrix size, 1..2000. */
  n: number
  /** Number of products, 1..10000. */
  steps: number
  /** uint32 seed; M_k depends only on (seed, k). */
  seed: number
}

/** What a finished run reports (a type alias, so it is a JSON record as the job-type contract's result() asks). */
export type LyapunovResult = {
  /** (1/steps)·Σ ln g_k, the estimate of the top Lyapunov exponent. */
  lyapunov: number
  /** ½(ln 2 + ψ(n/2)), the exact top exponent for i.i.d. standard normal entries. */
  theory: number
  /** trace(C_steps) of the final normalized product; a fingerprint of the whole computation. */
  trace: number
  /** Compute time summed over the attempts whose work counted (ms). */
  elapsedMs: number
  /** 2·n³·steps / elapsed, in GFLOP/s. */
  gflops: number
  /** Most compute threads one unit of work used (1 = the worker's own thread only). */
  threads: number
}

export { PANEL_WIDTH }

// ---------------------------------------------------------------------------------------------------------
// Seeded normal numbers

/** splitmix32 finaliser: a well-mixed 32-bit hash of a 32-bit value. */
function mix32 (x: number): number {
  x = (x + 0x9e3779b9) | 0
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b)
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35)
  return (x ^ (x >>> 16)) >>> 0
}

/**
 * A sfc32 generator whose state is derived from (seed, k) alone, so matrix k can be drawn without drawing
 * matrices 0..k-1 first: a resumed job regenerates exactly the matrices an uninterrupted run would see.
 */
function streamFor (seed: number, k: number): () => number {
  let a = mix32(seed ^ 0x243f6a88)
  let b = mix32(k ^ 0x85a308d3)
  let c = mix32((seed + Math.imul(k, 0x9e3779b9)) | 0)
  let d = 1
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0
    d = (d + 1) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) | 0
    return t >>> 0
  }
  for (let i = 0; i < 12; i++) next()
  return next
}

/** i.i.d. standard normal numbers of stream (seed, k), one at a time, by the Box–Muller transform (pairs). */
function normals (seed: number, k: number): () => number {
  const next = streamFor(seed, k)
  let spare = 0
  let hasSpare = false
  return () => {
    if (hasSpare) {
      hasSpare = false
      return spare
    }
    // 53-bit uniform in (0, 1]: never 0, so the logarithm is finite.
    const u1 = ((next() >>> 5) * 67108864 + (next() >>> 6) + 1) / 9007199254740992
    const u2 = ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992
    const r = Math.sqrt(-2 * Math.log(u1))
    spare = r * Math.sin(2 * Math.PI * u2)
    hasSpare = true
    return r * Math.cos(2 * Math.PI * u2)
  }
}

/**
 * Fills `out` with the numbers of stream (seed, k), in order: the same numbers as `normals(seed, k)` called
 * out.length times, with the generator's state in local variables (no call per number), since drawing M_k is
 * on the critical path of every step.
 */
export function fillGaussian (out: Float64Array | number[], seed: number, k: number): void {
  const next = streamFor(seed, k)
  const len = out.length
  let i = 0
  while (i < len) {
    const u1 = ((next() >>> 5) * 67108864 + (next() >>> 6) + 1) / 9007199254740992
    const u2 = ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992
    const r = Math.sqrt(-2 * Math.log(u1))
    out[i++] = r * Math.cos(2 * Math.PI * u2)
    if (i < len) out[i++] = r * Math.sin(2 * Math.PI * u2)
  }
}

/**
 * M_k as a mathjs dense matrix of datatype 'number', row by row from the stream (for measurements: a run draws
 * M_k straight into its shared buffer instead).
 */
export function gaussianMatrix (n: number, seed: number, k: number): Matrix {
  const normal = normals(seed, k)
  const rows: number[][] = new Array(n)
  for (let i = 0; i < n; i++) {
    const row = new Array<number>(n).fill(0)
    for (let j = 0; j < n; j++) row[j] = normal()
    rows[i] = row
  }
  return new mathCore.DenseMatrix({ data: rows, size: [n, n], datatype: 'number' })
}

// ---------------------------------------------------------------------------------------------------------
// Digamma and the theoretical exponent

/** ψ(x), the digamma function, for x > 0: recurrence up to x ≥ 6, then the asymptotic series. */
export function digamma (x: number): number {
  if (!(x > 0)) throw new RangeError(`digamma is implemented for x > 0, got ${x}`)
  let acc = 0
  while (x < 6) {
    acc -= 1 / x
    x += 1
  }
  const f = 1 / (x * x)
  const series = f * (-1 / 12 + f * (1 / 120 + f * (-1 / 252 + f * (1 / 240 + f * (-1 / 132 + f * (691 / 32760 - f / 12))))))
  return acc + Math.log(x) - 0.5 / x + series
}

/** The top Lyapunov exponent of products of n×n matrices with i.i.d. N(0,1) entries: ½(ln 2 + ψ(n/2)). */
export function theoreticalExponent (n: number): number {
  return 0.5 * (Math.LN2 + digamma(n / 2))
}

// ---------------------------------------------------------------------------------------------------------
// The run: a resumable sequence of small units of work

/** A saved point of a run, from which it continues bit for bit. */
export interface Checkpoint {
  /** Products completed (0 = only C_0 computed). */
  step: number
  /** Serialized state (see LyapunovRun.checkpoint for the layout). */
  state: Buffer
}

/** Options of a run. */
export interface RunOptions {
  /**
   * Compute threads the run may use for its next unit (≥ 1; read before every unit, so the share may change
   * between units). Default: NONSTOP_THREADS if set, else 1. The bits of the result do not depend on it.
   */
  threads?: () => number
  /** Told when a compute thread died and its part of a unit was computed on the run's own thread instead. */
  onThreadLost?: (err: Error) => void
}

/** The default thread count: NONSTOP_THREADS (an integer ≥ 1), else 1. */
export function threadsFromEnv (env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.NONSTOP_THREADS)
  return Number.isInteger(v) && v >= 1 ? Math.min(v, MAX_THREADS) : 1
}

/**
 * The product of random matrices, advanced a few column groups at a time.
 *
 * State lives in shared buffers: M_k row-major (drawn straight into it), C and C' column-major, alternating
 * roles every step. A unit of work computes PANEL_WIDTH columns of C' = M_k·C per thread with mathjs
 * (ProductKernel), the main thread doing one group and each pool thread another; the step ends by dividing C'
 * in place by its norm. Whatever the thread count, each column is computed by the same mathjs calls and the
 * squared norms of the groups are added in group order, so the bits are the same.
 */
export class LyapunovRun {
  readonly n: number
  readonly steps: number
  readonly seed: number
  /** Products completed. */
  step = 0
  private logSum = 0
  private computeMs = 0
  private readonly shared: SharedBuffers
  private readonly buffers: ProductBuffers
  private readonly kernel: ProductKernel
  /** Which of the two C buffers holds C (the other receives C'). */
  private src: 0 | 1 = 0
  /** Which matrix M holds now (-1: none). */
  private mOf = -1
  // Within a step: squared norms of the groups of C' computed so far, in group order.
  private nextSq: number[] = []
  private pool: ThreadPool | null = null
  private readonly threadsWanted: () => number
  private readonly onThreadLost: ((err: Error) => void) | undefined
  /** Most threads one unit of this run has used. */
  threadsUsed = 1

  constructor (params: LyapunovParams, from?: Checkpoint, options: RunOptions = {}) {
    this.n = params.n
    this.steps = params.steps
    this.seed = params.seed
    const n = this.n
    const sab = (): SharedArrayBuffer => new SharedArrayBuffer(8 * n * n)
    this.shared = { n, m: sab(), c0: sab(), c1: sab() }
    this.buffers = { n, m: new Float64Array(this.shared.m), c: [new Float64Array(this.shared.c0), new Float64Array(this.shared.c1)] }
    this.kernel = new ProductKernel(this.buffers)
    const env = threadsFromEnv()
    this.threadsWanted = options.threads ?? (() => env)
    this.onThreadLost = options.onThreadLost
    if (from) this.restore(from)
    else this.start()
  }

  /** Number of column groups (units of one thread) in a step. */
  get panelCount (): number {
    return Math.ceil(this.n / PANEL_WIDTH)
  }

  /** True once all steps are done. */
  get finished (): boolean {
    return this.step >= this.steps
  }

  /** Fraction of the whole run done, 0..1, counting groups within the current step. */
  get fraction (): number {
    return Math.min(1, (this.step + this.nextSq.length / this.panelCount) / this.steps)
  }

  /** C_0 = M_0 / ‖M_0‖_F, with the norm added up as math.norm(M_0, 'fro') does (row by row) and the same division. */
  private start (): void {
    const t = monotonicMs()
    const { n, m } = this.buffers
    this.drawM(0)
    let fro = 0
    for (let i = 0; i < m.length; i++) fro += m[i] * m[i]
    const norm = Math.sqrt(fro)
    const c = this.buffers.c[0]
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) c[j * n + i] = m[i * n + j] / norm
    this.computeMs += monotonicMs() - t
  }

  private drawM (k: number): void {
    if (this.mOf === k) return
    fillGaussian(this.buffers.m, this.seed, k)
    this.mOf = k
  }

  /**
   * Does one unit of work: one group of PANEL_WIDTH columns of the current product per thread, and the
   * normalization when that ends the step. Returns a Promise only when pool threads took part.
   */
  advance (): void | Promise<void> {
    if (this.finished) return
    const t = monotonicMs()
    this.drawM(this.step + 1)
    const first = this.nextSq.length
    const wanted = Math.min(this.panelCount - first, Math.max(1, Math.min(MAX_THREADS, Math.floor(this.threadsWanted()) || 1)))
    if (wanted > 1) {
      this.pool ??= new ThreadPool({ kind: 'init', ...this.shared }, this.onThreadLost)
      // Grow only: a thread left idle by a smaller share costs nothing and is ready when the share grows back.
      if (this.pool.size < wanted - 1) this.pool.resize(wanted - 1)
    }
    // Threads still starting (loading mathjs) take no group yet: this unit runs on those ready.
    const groups = wanted > 1 && this.pool ? 1 + Math.min(wanted - 1, this.pool.ready()) : 1
    if (groups === 1 || !this.pool) {
      const norm = this.kernel.group(this.step + 1, this.src, first * PANEL_WIDTH, this.widthOf(first))
      this.unitDone([norm], t)
      return
    }
    const pool = this.pool
    const others: Array<Promise<number>> = []
    for (let g = 1; g < groups; g++) {
      const work = { kind: 'group', k: this.step + 1, src: this.src, col0: (first + g) * PANEL_WIDTH, width: this.widthOf(first + g) } as const
      // A thread that dies leaves its group to this thread: the same kernel on the same buffers, the same bits.
      others.push(pool.callOr(g - 1, work, () => this.kernel.group(work.k, work.src, work.col0, work.width)))
    }
    let mine: number
    try {
      mine = this.kernel.group(this.step + 1, this.src, first * PANEL_WIDTH, this.widthOf(first))
    } catch (err) {
      others.forEach((p) => { p.catch(() => {}) })
      throw err
    }
    return Promise.all(others).then((norms) => {
      if (groups > this.threadsUsed) this.threadsUsed = groups
      this.unitDone([mine, ...norms], t)
    })
  }

  private widthOf (group: number): number {
    return Math.min(PANEL_WIDTH, this.n - group * PANEL_WIDTH)
  }

  private unitDone (norms: number[], t: number): void {
    for (const norm of norms) this.nextSq.push(norm * norm)
    if (this.nextSq.length === this.panelCount) {
      let sq = 0
      for (const s of this.nextSq) sq += s
      const g = Math.sqrt(sq)
      this.logSum += Math.log(g)
      // In place, the same division math.divide(C', g) does element by element.
      const next = this.buffers.c[1 - this.src]
      for (let i = 0; i < next.length; i++) next[i] = next[i] / g
      this.src = this.src === 0 ? 1 : 0
      this.nextSq = []
      this.step++
    }
    this.computeMs += monotonicMs() - t
  }

  /**
   * Starts `count` compute threads (default: what `threads()` asks for now) and resolves once they can take work.
   * Optional: advance() starts them too, and uses them from the first unit after they are up.
   */
  async startThreads (count = Math.floor(this.threadsWanted())): Promise<void> {
    const wanted = Math.min(MAX_THREADS, Math.max(1, count || 1))
    if (wanted < 2) return
    this.pool ??= new ThreadPool({ kind: 'init', ...this.shared }, this.onThreadLost)
    if (this.pool.size < wanted - 1) this.pool.resize(wanted - 1)
    const until = Date.now() + 120_000
    while (this.pool.ready() < wanted - 1 && !this.pool.exhausted) {
      if (Date.now() > until) throw new Error(`compute threads did not start within 120 s (${this.pool.ready()} of ${wanted - 1})`)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }

  /** Ends the run's compute threads (if any). The run can still advance afterwards, on fewer threads. */
  async close (): Promise<void> {
    const pool = this.pool
    this.pool = null
    await pool?.close()
  }

  /**
   * The state now, between any two units of work. Mid-step it also holds the columns of C' already computed
   * (and the squared norms of their groups), so a resumed run redoes at most one unit, not a whole step: at
   * n = 2000 a step is tens of seconds. M_k is not saved: it is regenerated from (seed, k).
   *
   * Layout (float64): Σ ln g, compute ms, groups of C' done (J), J squared norms, C column by column,
   * then the first J·PANEL_WIDTH columns of C' column by column.
   */
  checkpoint (): Checkpoint {
    const n = this.n
    const done = this.nextSq.length
    const doneColumns = Math.min(n, done * PANEL_WIDTH)
    const out = new Float64Array(3 + done + n * n + doneColumns * n)
    out[0] = this.logSum
    out[1] = this.computeMs
    out[2] = done
    out.set(this.nextSq, 3)
    out.set(this.buffers.c[this.src], 3 + done)
    out.set(this.buffers.c[1 - this.src].subarray(0, doneColumns * n), 3 + done + n * n)
    return { step: this.step, state: Buffer.from(out.buffer, out.byteOffset, out.byteLength) }
  }

  private restore (from: Checkpoint): void {
    const n = this.n
    if (!Number.isInteger(from.step) || from.step < 0 || from.step > this.steps) {
      throw new Error(`checkpoint step ${from.step} is outside 0..${this.steps}`)
    }
    const data = from.state.byteLength % 8 === 0 && from.state.byteLength >= 24
      ? new Float64Array(new Uint8Array(from.state).buffer)
      : new Float64Array(0)
    const done = data.length > 0 ? data[2] : -1
    const expected = 3 + done + n * n + Math.min(n, done * PANEL_WIDTH) * n
    if (!Number.isInteger(done) || done < 0 || done >= this.panelCount || data.length !== expected) {
      throw new Error(`checkpoint holds ${from.state.byteLength} bytes, expected ${expected * 8} for n=${n} with ${done} panels done`)
    }
    this.logSum = data[0]
    this.computeMs = data[1]
    this.step = from.step
    this.nextSq = Array.from(data.subarray(3, 3 + done))
    this.src = 0
    this.buffers.c[0].set(data.subarray(3 + done, 3 + done + n * n))
    this.buffers.c[1].set(data.subarray(3 + done + n * n))
  }

  /** The answer; only once finished. */
  result (): LyapunovResult {
    if (!this.finished) throw new Error('the run is not finished')
    const c = this.buffers.c[this.src]
    let trace = 0
    for (let i = 0; i < this.n; i++) trace += c[i * this.n + i]
    const seconds = this.computeMs / 1000
    return {
      lyapunov: this.logSum / this.steps,
      theory: theoreticalExponent(this.n),
      trace,
      elapsedMs: Math.round(this.computeMs),
      gflops: seconds > 0 ? (2 * this.n ** 3 * this.steps) / seconds / 1e9 : 0,
      threads: this.threadsUsed
    }
  }
}
