import type { Matrix } from 'mathjs'
import { DenseMatrix, math } from './math.js'

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
}

/** Columns per panel. The product is computed panel by panel so that the right-hand factor mathjs walks
 * down column-wise stays in cache (32 columns × n rows); see docs/benchmarks.md for the measured choice. */
export const PANEL_WIDTH = 32

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

/** Fills `out` with the numbers of stream (seed, k), in order. */
export function fillGaussian (out: Float64Array | number[], seed: number, k: number): void {
  const normal = normals(seed, k)
  for (let i = 0; i < out.length; i++) out[i] = normal()
}

/**
 * M_k as a mathjs dense matrix of datatype 'number' (so mathjs uses its plain-number kernels), row by row from
 * the stream. Built with the `{ data, size, datatype }` form, which mathjs takes as it is: `math.matrix(rows)`
 * would copy all n² numbers once more.
 */
export function gaussianMatrix (n: number, seed: number, k: number): Matrix {
  const normal = normals(seed, k)
  const rows: number[][] = new Array(n)
  for (let i = 0; i < n; i++) {
    const row = new Array<number>(n).fill(0)
    for (let j = 0; j < n; j++) row[j] = normal()
    rows[i] = row
  }
  return new DenseMatrix({ data: rows, size: [n, n], datatype: 'number' })
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

/**
 * The product of random matrices, advanced one panel at a time.
 *
 * C is kept as column panels (n × PANEL_WIDTH mathjs matrices). Step k computes C' = M_k·C panel by panel
 * with `math.multiply(M_k, panel)`: mathjs walks each row of M_k left to right and a panel that fits in
 * cache top to bottom, which is what makes it several times faster than one big `math.multiply`.
 */
export class LyapunovRun {
  readonly n: number
  readonly steps: number
  readonly seed: number
  /** Products completed. */
  step = 0
  private logSum = 0
  private computeMs = 0
  private panels: Matrix[] = []
  // Within a step: M_k, the panels of C' computed so far and their squared norms.
  private m: Matrix | null = null
  private next: Matrix[] = []
  private nextSq: number[] = []

  constructor (params: LyapunovParams, from?: Checkpoint) {
    this.n = params.n
    this.steps = params.steps
    this.seed = params.seed
    if (from) this.restore(from)
    else this.start()
  }

  /** Number of panels C is split into. */
  get panelCount (): number {
    return Math.ceil(this.n / PANEL_WIDTH)
  }

  /** True once all steps are done. */
  get finished (): boolean {
    return this.step >= this.steps
  }

  /** Fraction of the whole run done, 0..1, counting panels within the current step. */
  get fraction (): number {
    return Math.min(1, (this.step + this.next.length / this.panelCount) / this.steps)
  }

  /** C_0 = M_0 / ‖M_0‖_F. */
  private start (): void {
    const t = performance.now()
    const m0 = gaussianMatrix(this.n, this.seed, 0)
    const norm = math.norm(m0, 'fro') as number
    this.panels = this.split(math.divide(m0, norm) as Matrix)
    this.computeMs += performance.now() - t
  }

  private split (m: Matrix): Matrix[] {
    const panels: Matrix[] = []
    const rows = m.valueOf() as number[][]
    for (let p = 0; p < this.n; p += PANEL_WIDTH) {
      const w = Math.min(PANEL_WIDTH, this.n - p)
      panels.push(math.matrix(rows.map((r) => r.slice(p, p + w)), 'dense', 'number'))
    }
    return panels
  }

  /**
   * Does one unit of work: one panel of the current product, or the normalization that ends a step.
   * Each unit is at most a few hundred milliseconds even at n = 2000.
   */
  advance (): void {
    if (this.finished) return
    const t = performance.now()
    if (this.m === null) this.m = gaussianMatrix(this.n, this.seed, this.step + 1)
    const p = this.next.length
    const product = math.multiply(this.m, this.panels[p]) as Matrix
    this.next.push(product)
    const norm = math.norm(product, 'fro') as number
    this.nextSq.push(norm * norm)
    if (this.next.length === this.panelCount) {
      let sq = 0
      for (const s of this.nextSq) sq += s
      const g = Math.sqrt(sq)
      this.logSum += Math.log(g)
      this.panels = this.next.map((panel) => math.divide(panel, g) as Matrix)
      this.next = []
      this.nextSq = []
      this.m = null
      this.step++
    }
    this.computeMs += performance.now() - t
  }

  /**
   * The state now, between any two units of work. Mid-step it also holds the panels of C' already computed
   * (and their squared norms), so a resumed run redoes at most one unit, not a whole step: at n = 2000 a step
   * is tens of seconds. M_k is not saved: it is regenerated from (seed, k).
   *
   * Layout (float64): Σ ln g, compute ms, panels of C' done (J), J squared norms, C column by column,
   * then the J panels of C' column by column.
   */
  checkpoint (): Checkpoint {
    const n = this.n
    const done = this.next.length
    const doneColumns = Math.min(n, done * PANEL_WIDTH)
    const out = new Float64Array(3 + done + n * n + doneColumns * n)
    out[0] = this.logSum
    out[1] = this.computeMs
    out[2] = done
    let offset = 3
    for (const sq of this.nextSq) out[offset++] = sq
    for (const panel of [...this.panels, ...this.next]) {
      const rows = panel.valueOf() as number[][]
      const w = rows[0].length
      for (let j = 0; j < w; j++) for (let i = 0; i < n; i++) out[offset++] = rows[i][j]
    }
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
    let offset = 3 + done
    const readPanels = (count: number): Matrix[] => {
      const panels: Matrix[] = []
      for (let p = 0; p < count; p++) {
        const w = Math.min(PANEL_WIDTH, n - p * PANEL_WIDTH)
        const rows: number[][] = Array.from({ length: n }, () => new Array(w))
        for (let j = 0; j < w; j++) for (let i = 0; i < n; i++) rows[i][j] = data[offset++]
        panels.push(math.matrix(rows, 'dense', 'number'))
      }
      return panels
    }
    this.panels = readPanels(this.panelCount)
    this.next = readPanels(done)
  }

  /** The answer; only once finished. */
  result (): LyapunovResult {
    if (!this.finished) throw new Error('the run is not finished')
    let trace = 0
    for (let i = 0; i < this.n; i++) {
      const panel = this.panels[Math.floor(i / PANEL_WIDTH)]
      trace += panel.get([i, i % PANEL_WIDTH]) as number
    }
    const seconds = this.computeMs / 1000
    return {
      lyapunov: this.logSum / this.steps,
      theory: theoreticalExponent(this.n),
      trace,
      elapsedMs: Math.round(this.computeMs),
      gflops: seconds > 0 ? (2 * this.n ** 3 * this.steps) / seconds / 1e9 : 0
    }
  }
}
