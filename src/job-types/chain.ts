/**
 * A chain of matrix products on stored matrices, resumable between any two units of work: the maths shared by
 * matmul (M1·M2·…·Mk) and matpow (A^k by repeated squaring).
 *
 * Each product P' = P·R runs as lyapunov's does (docs/benchmarks.md): R is cut into 32-column panels, mathjs
 * DenseMatrix of datatype 'number', and `math.multiply(block, panel)` walks rows of P and a panel that stays in
 * cache. A unit of work is one panel against a block of P's rows, sized to ~1e8 flops (well under a second), so
 * progress moves and a checkpoint can be taken inside a product even at 8192×8192.
 *
 * Memory: P, the P' being filled, the stored right-hand factor (matmul: the one of the current product; matpow:
 * A) and one panel. Stored matrices are loaded when their product starts, not all at once.
 */
import type { MathJsInstance, Matrix as MathMatrix } from 'mathjs'
import type { Checkpoint, JobContext, JobRun, ResultContext, StoredMatrix } from '../jobs/contract.js'
import { matrixSha256 } from '../matrices/matrix.js'

/** Columns per panel of the right-hand factor (the width lyapunov measured best). */
export const PANEL_WIDTH = 32
/** Work of one unit: a panel against as many rows of P as fit in about this many flops. */
export const UNIT_FLOPS = 1e8
/** Version of the checkpoint layout below. */
const STATE_VERSION = 1
/** Float64 slots before the matrices in a checkpoint. */
const HEADER = 9

/** One product of the chain: P·R. */
export interface ChainProduct {
  /** R: a stored matrix's id, or 'self' for P·P (squaring). */
  right: number | 'self'
  /** Names the product in messages, e.g. "matpow product 5 of 8 (A^16 = A^8·A^8)". */
  label: string
}

/** What a chain computes. */
export interface ChainSpec {
  /** The stored matrix P starts as. */
  first: number
  products: ChainProduct[]
  /** Name of the result matrix. */
  resultName: string
}

/** What both job types answer. */
export interface ChainResult extends Record<string, unknown> {
  /** Id of the stored result matrix. */
  matrix: number
  rows: number
  cols: number
  /** sha256 of the result's canonical bytes. */
  sha256: string
  /** Frobenius norm of the result. */
  frobenius: number
  /** Compute time summed over the attempts whose work counted (ms). */
  elapsedMs: number
  /** Flops of the products (2·r·m·n each) per second of compute, in GFLOP/s. */
  gflops: number
}

type DenseCtor = new (init: { data: number[][], size: [number, number], datatype: 'number' }) => MathMatrix

/** Rows as mathjs's dense matrices hold them: packed arrays of doubles. */
function rowsOf (m: StoredMatrix): number[][] {
  const out: number[][] = new Array(m.rows)
  for (let i = 0; i < m.rows; i++) out[i] = Array.from(m.data.subarray(i * m.cols, (i + 1) * m.cols))
  return out
}

/** A right-hand factor: its shape and a way to cut a panel out of it. */
interface RightFactor {
  rows: number
  cols: number
  /** Columns j0..j0+w as m rows of w numbers. */
  panel: (j0: number, w: number) => number[][]
}

function storedFactor (m: StoredMatrix): RightFactor {
  return {
    rows: m.rows,
    cols: m.cols,
    panel: (j0, w) => {
      const out: number[][] = new Array(m.rows)
      for (let i = 0; i < m.rows; i++) out[i] = Array.from(m.data.subarray(i * m.cols + j0, i * m.cols + j0 + w))
      return out
    }
  }
}

function rowsFactor (rows: number[][], cols: number): RightFactor {
  return { rows: rows.length, cols, panel: (j0, w) => rows.map((r) => r.slice(j0, j0 + w)) }
}

/** A chain of products in progress. */
export class ChainRun implements JobRun {
  private readonly math: MathJsInstance
  private readonly Dense: DenseCtor
  /** Products completed. */
  private index = 0
  /** Within the current product: panels done, and row blocks done of the current panel. */
  private panel = 0
  private block = 0
  private computeMs = 0
  private flops = 0
  /** P, row by row (r × m). */
  private acc: number[][] = []
  private accCols = 0
  /** P' being filled (r × n), or null between products. */
  private next: number[][] | null = null
  private right: RightFactor | null = null
  private panelMatrix: MathMatrix | null = null
  /** The last stored matrix loaded (matpow multiplies by A again and again). */
  private cached: StoredMatrix | null = null

  /** `unitFlops` is for tests, to cut small products into several row blocks; jobs use UNIT_FLOPS. */
  constructor (private readonly spec: ChainSpec, from: Checkpoint | undefined, private readonly ctx: JobContext, private readonly unitFlops = UNIT_FLOPS) {
    this.math = ctx.math
    this.Dense = (ctx.math as unknown as { DenseMatrix: DenseCtor }).DenseMatrix
    if (from) this.restore(from)
    else {
      const first = this.load(spec.first)
      this.acc = rowsOf(first)
      this.accCols = first.cols
    }
  }

  get steps (): number { return Math.max(1, this.spec.products.length) }
  get step (): number { return this.finished ? this.steps : this.index }
  get finished (): boolean { return this.index >= this.spec.products.length }

  get fraction (): number {
    if (this.finished) return 1
    let within = 0
    if (this.next && this.right) {
      const blocks = this.blockCount()
      within = (this.panel * blocks + this.block) / (this.panelCount() * blocks)
    }
    return (this.index + within) / this.spec.products.length
  }

  private load (id: number): StoredMatrix {
    if (this.cached?.id !== id) {
      this.cached = null // let the previous one go before the next one is read
      this.cached = this.ctx.loadMatrix(id)
    }
    return this.cached
  }

  /** Rows of P per unit: deterministic from the shapes, so a resumed run cuts the work the same way. */
  private rowsPerBlock (): number {
    return Math.max(1, Math.min(this.acc.length, Math.floor(this.unitFlops / (2 * this.accCols * PANEL_WIDTH))))
  }

  private blockCount (): number { return Math.ceil(this.acc.length / this.rowsPerBlock()) }
  private panelCount (): number { return Math.ceil((this.right as RightFactor).cols / PANEL_WIDTH) }

  /** Sets up the current product: its right-hand factor, checked against P, and an empty P'. */
  private begin (): void {
    const product = this.spec.products[this.index]
    const right = product.right === 'self' ? rowsFactor(this.acc, this.accCols) : storedFactor(this.load(product.right))
    if (right.rows !== this.accCols) {
      throw new Error(`${product.label}: the shapes do not fit (${this.acc.length}×${this.accCols} times ${right.rows}×${right.cols})`)
    }
    this.right = right
    // Filled with a fraction so V8 keeps the rows as packed doubles whatever values land in them.
    this.next = Array.from({ length: this.acc.length }, () => new Array<number>(right.cols).fill(0.5))
  }

  advance (): void {
    if (this.finished) return
    const t = performance.now()
    if (!this.next) this.begin()
    const right = this.right as RightFactor
    const next = this.next as number[][]
    const j0 = this.panel * PANEL_WIDTH
    const w = Math.min(PANEL_WIDTH, right.cols - j0)
    if (!this.panelMatrix) {
      this.panelMatrix = new this.Dense({ data: right.panel(j0, w), size: [right.rows, w], datatype: 'number' })
    }
    const rb = this.rowsPerBlock()
    const i0 = this.block * rb
    const i1 = Math.min(this.acc.length, i0 + rb)
    // The block adopts P's row arrays: no copy.
    const block = new this.Dense({ data: this.acc.slice(i0, i1), size: [i1 - i0, this.accCols], datatype: 'number' })
    const out = (this.math.multiply(block, this.panelMatrix) as MathMatrix).valueOf() as number[][]
    for (let i = i0; i < i1; i++) {
      const src = out[i - i0]
      const dst = next[i]
      for (let j = 0; j < w; j++) {
        const x = src[j]
        if (!Number.isFinite(x)) {
          throw new Error(`${this.spec.products[this.index].label} overflowed: entry (${i + 1}, ${j0 + j + 1}) is ${x}; scale the matrices down and retry`)
        }
        dst[j0 + j] = x
      }
    }
    this.block++
    if (i1 >= this.acc.length) {
      this.block = 0
      this.panel++
      this.panelMatrix = null
      if (this.panel * PANEL_WIDTH >= right.cols) this.finishProduct()
    }
    this.computeMs += performance.now() - t
  }

  private finishProduct (): void {
    const right = this.right as RightFactor
    this.flops += 2 * this.acc.length * this.accCols * right.cols
    this.acc = this.next as number[][]
    this.accCols = right.cols
    this.next = null
    this.right = null
    this.panel = 0
    this.block = 0
    this.index++
    // A stored factor no later product needs is let go now.
    const later = new Set(this.spec.products.slice(this.index).map((p) => p.right))
    if (this.cached && !later.has(this.cached.id)) this.cached = null
  }

  /**
   * Layout (float64): version, products done, panels done, row blocks done, compute ms, flops, rows and columns
   * of P, whether a product is under way; then P row by row; then the part of P' already computed: for every row
   * the columns of the finished panels, then the current panel's columns for the rows already done.
   */
  checkpoint (): Checkpoint {
    const r = this.acc.length
    const m = this.accCols
    const c0 = this.panel * PANEL_WIDTH
    let w = 0
    let doneRows = 0
    if (this.next && this.right) {
      w = Math.min(PANEL_WIDTH, this.right.cols - c0)
      doneRows = Math.min(r, this.block * this.rowsPerBlock())
    }
    const out = new Float64Array(HEADER + r * m + (this.next ? r * c0 + doneRows * w : 0))
    out.set([STATE_VERSION, this.index, this.panel, this.block, this.computeMs, this.flops, r, m, this.next ? 1 : 0])
    let o = HEADER
    for (const row of this.acc) { out.set(row, o); o += m }
    if (this.next) {
      for (const row of this.next) { for (let j = 0; j < c0; j++) out[o++] = row[j] }
      for (let i = 0; i < doneRows; i++) { for (let j = 0; j < w; j++) out[o++] = this.next[i][c0 + j] }
    }
    // A Buffer (a Uint8Array) because that is what the SQLite driver binds as a blob.
    return { step: this.index, state: Buffer.from(out.buffer, out.byteOffset, out.byteLength) }
  }

  private restore (from: Checkpoint): void {
    const bytes = from.state
    const bad = (why: string): never => { throw new Error(`checkpoint does not fit this job: ${why}`) }
    if (bytes.byteLength % 8 !== 0 || bytes.byteLength < HEADER * 8) bad(`${bytes.byteLength} bytes`)
    const data = new Float64Array(bytes.byteLength / 8)
    new Uint8Array(data.buffer).set(bytes)
    const [version, index, panel, block, computeMs, flops, r, m, inProgress] = data.subarray(0, HEADER)
    if (version !== STATE_VERSION) bad(`layout version ${version}`)
    if (!Number.isInteger(index) || index < 0 || index > this.spec.products.length) bad(`product ${index}`)
    if (!Number.isInteger(r) || !Number.isInteger(m) || r < 1 || m < 1 || data.length < HEADER + r * m) bad(`P of ${r}×${m}`)
    this.index = index
    this.computeMs = computeMs
    this.flops = flops
    this.acc = new Array(r)
    for (let i = 0; i < r; i++) this.acc[i] = Array.from(data.subarray(HEADER + i * m, HEADER + (i + 1) * m))
    this.accCols = m
    let o = HEADER + r * m
    if (inProgress === 1) {
      if (this.finished) bad('a product under way after the last one')
      this.begin()
      const right = this.right as RightFactor
      const c0 = panel * PANEL_WIDTH
      const w = Math.min(PANEL_WIDTH, right.cols - c0)
      const doneRows = Math.min(r, block * this.rowsPerBlock())
      if (!Number.isInteger(panel) || !Number.isInteger(block) || panel < 0 || c0 >= right.cols || block < 0 || block >= this.blockCount() ||
        data.length !== o + r * c0 + doneRows * w) bad(`panel ${panel}, block ${block}, ${data.length} numbers`)
      const next = this.next as number[][]
      for (const row of next) { for (let j = 0; j < c0; j++) row[j] = data[o++] }
      for (let i = 0; i < doneRows; i++) { for (let j = 0; j < w; j++) next[i][c0 + j] = data[o++] }
      this.panel = panel
      this.block = block
    } else if (data.length !== o || panel !== 0 || block !== 0) {
      bad(`${data.length} numbers between products`)
    }
  }

  /** The product as one row-major array. */
  private flat (): Float64Array {
    const m = this.accCols
    const out = new Float64Array(this.acc.length * m)
    this.acc.forEach((row, i) => out.set(row, i * m))
    return out
  }

  result (out: ResultContext): ChainResult {
    if (!this.finished) throw new Error('the run is not finished')
    const data = this.flat()
    const rows = this.acc.length
    const cols = this.accCols
    const dense = new this.Dense({ data: this.acc, size: [rows, cols], datatype: 'number' })
    let frobenius = this.math.norm(dense, 'fro') as number
    if (!Number.isFinite(frobenius)) {
      // Squares beyond float64 although every entry is finite: the same norm, scaled by the largest entry.
      const scale = this.math.max(this.math.abs(dense) as MathMatrix) as number
      frobenius = (this.math.norm(this.math.divide(dense, scale) as MathMatrix, 'fro') as number) * scale
    }
    const sha256 = matrixSha256(data)
    const matrix = out.storeMatrix({ name: this.spec.resultName, rows, cols, data })
    const seconds = this.computeMs / 1000
    return {
      matrix,
      rows,
      cols,
      sha256,
      frobenius,
      elapsedMs: Math.round(this.computeMs),
      gflops: seconds > 0 ? this.flops / seconds / 1e9 : 0
    }
  }

  close (): void {
    this.acc = []
    this.next = null
    this.right = null
    this.panelMatrix = null
    this.cached = null
  }
}
