/**
 * A chain of matrix products on stored matrices, resumable between any two units of work: the maths shared by
 * matmul (M1·M2·…·Mk) and matpow (A^k by repeated squaring).
 *
 * Each product P' = P·R runs as lyapunov's does (src/jobs/threads/chain-product.ts, docs/benchmarks.md):
 * `math.multiply(block, column)` on 32-row blocks of P and single columns of R, mathjs's matrix-vector loop. Every
 * entry of P' is mathjs's sum P[i][0]·R[0][j] + P[i][1]·R[1][j] + … in that order, as one stock
 * `math.multiply(P, R)` computes it, so the bits do not depend on how the work is cut nor on the thread count. A
 * unit of work is a panel of 32 columns against a range of P's rows sized to ~1e8 flops (well under a second), so
 * progress moves and a checkpoint can be taken inside a product even at 8192×8192; with more than one compute
 * thread (JobContext.threads()) the unit's rows are shared among them (src/jobs/threads/pool.ts).
 *
 * Memory: P, the P' being filled and the stored right-hand factor (matmul: the one of the current product;
 * matpow: A), each a flat array every thread shares, plus the plain-array copy of P's rows that mathjs reads (each
 * thread copies the rows it computes) and the current panel's columns. Stored matrices are loaded when their product starts, not all at once.
 */
import type { MathJsInstance, Matrix as MathMatrix } from 'mathjs'
import type { Checkpoint, JobContext, JobRun, ResultContext, StoredMatrix } from '../jobs/contract.js'
import { CHAIN_PANEL, ChainKernel, type ChainProductBuffers } from '../jobs/threads/chain-product.js'
import { monotonicMs } from '../jobs/clock.js'
import { MAX_THREADS, threadLost, type ThreadSetup, ThreadPool } from '../jobs/threads/pool.js'
import { matrixSha256 } from '../matrices/matrix.js'

/** Columns per panel of the right-hand factor (the width lyapunov measured best). */
export const PANEL_WIDTH = CHAIN_PANEL
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
  /** Most compute threads one unit of work used (in the last attempt). */
  threads: number
}

type DenseCtor = new (init: { data: number[][], size: [number, number], datatype: 'number' }) => MathMatrix

/** A copy of `data` that compute threads can share. */
function shared (data: Float64Array): Float64Array {
  const out = new Float64Array(new SharedArrayBuffer(data.byteLength))
  out.set(data)
  return out
}

const sharedZeros = (length: number): Float64Array => new Float64Array(new SharedArrayBuffer(8 * length))

/** A chain of products in progress. */
export class ChainRun implements JobRun {
  private readonly math: MathJsInstance
  /** Products completed. */
  private index = 0
  /** Within the current product: panels done, and row blocks done of the current panel. */
  private panel = 0
  private block = 0
  private computeMs = 0
  private flops = 0
  /** P (r × m), row-major; on a SharedArrayBuffer once compute threads take part. */
  private p: Float64Array = new Float64Array(0)
  private r = 0
  private m = 0
  /** The current product's operands (P' being filled), or null between products. */
  private current: ChainProductBuffers | null = null
  /** The same, as sent to compute threads. */
  private setup: ThreadSetup | null = null
  /** The last stored matrix loaded (matpow multiplies by A again and again). */
  private cached: StoredMatrix | null = null
  private readonly kernel = new ChainKernel()
  private pool: ThreadPool | null = null
  /** Most threads one unit has used. */
  private threadsUsed = 1

  /** `unitFlops` is for tests, to cut small products into several row blocks; jobs use UNIT_FLOPS. */
  constructor (private readonly spec: ChainSpec, from: Checkpoint | undefined, private readonly ctx: JobContext, private readonly unitFlops = UNIT_FLOPS) {
    this.math = ctx.math
    if (from) this.restore(from)
    else {
      const first = this.load(spec.first)
      // Never written: P' is a new array.
      this.p = first.data
      this.r = first.rows
      this.m = first.cols
    }
  }

  get steps (): number { return Math.max(1, this.spec.products.length) }
  get step (): number { return this.finished ? this.steps : this.index }
  get finished (): boolean { return this.index >= this.spec.products.length }

  get fraction (): number {
    if (this.finished) return 1
    let within = 0
    if (this.current) {
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
    return Math.max(1, Math.min(this.r, Math.floor(this.unitFlops / (2 * this.m * PANEL_WIDTH))))
  }

  private blockCount (): number { return Math.ceil(this.r / this.rowsPerBlock()) }
  private panelCount (): number { return Math.ceil((this.current as ChainProductBuffers).n / PANEL_WIDTH) }

  /** Sets up the current product: its right-hand factor, checked against P, and an empty P'. */
  private begin (): void {
    const product = this.spec.products[this.index]
    const right = product.right === 'self'
      ? { rows: this.r, cols: this.m, data: this.p }
      : this.load(product.right)
    if (right.rows !== this.m) {
      throw new Error(`${product.label}: the shapes do not fit (${this.r}×${this.m} times ${right.rows}×${right.cols})`)
    }
    const next = sharedZeros(this.r * right.cols)
    this.current = { index: this.index, r: this.r, m: this.m, n: right.cols, p: this.p, right: right.data, next }
    this.setup = null
    this.kernel.product(this.current)
  }

  /**
   * The current product's operands as compute threads see them: P and R are copied onto SharedArrayBuffers the
   * first time threads take part (a run on one thread never copies them), P' is shared from the start.
   * `current` is updated in place: it is the object the run's own kernel reads.
   */
  private threadSetup (): ThreadSetup {
    if (this.setup) return this.setup
    const current = this.current as ChainProductBuffers
    const self = current.right === current.p
    if (!(current.p.buffer instanceof SharedArrayBuffer)) {
      this.p = current.p = shared(current.p)
      if (self) current.right = current.p
    }
    if (!(current.right.buffer instanceof SharedArrayBuffer)) {
      const before = current.right
      current.right = shared(before)
      // matpow's A is used again by later products: they reuse the shared copy.
      if (this.cached?.data === before) this.cached = { ...this.cached, data: current.right }
    }
    // The same numbers: the copies of P's rows the kernel holds stay valid (it reads `current` itself).
    const { index, r, m, n, p, right, next } = current
    this.setup = { kind: 'chain-product', index, r, m, n, p: p.buffer as SharedArrayBuffer, right: right.buffer as SharedArrayBuffer, next: next.buffer as SharedArrayBuffer }
    return this.setup
  }

  /** Threads this unit may use: what the context grants, started ones only (a thread still starting is not waited for). */
  private threadsForUnit (rows: number): number {
    const wanted = Math.min(rows, MAX_THREADS, Math.max(1, Math.floor(this.ctx.threads()) || 1))
    if (wanted < 2) return 1
    this.pool ??= new ThreadPool(undefined, threadLost(this.ctx.log))
    // Grow only: a thread left idle by a smaller share costs nothing and is ready when the share grows back.
    if (this.pool.size < wanted - 1) this.pool.resize(wanted - 1)
    return 1 + Math.min(wanted - 1, this.pool.ready())
  }

  advance (): void | Promise<void> {
    if (this.finished) return
    const t = monotonicMs()
    if (!this.current) this.begin()
    const rb = this.rowsPerBlock()
    const i0 = this.block * rb
    const i1 = Math.min(this.r, i0 + rb)
    const parts = this.threadsForUnit(i1 - i0)
    if (parts === 1 || !this.pool) {
      this.unitDone([this.kernel.unit(this.panel, i0, i1)], t)
      return
    }
    // Rows shared out in whole mathjs blocks where there are enough, the run's own thread taking the first part.
    const rows = i1 - i0
    const chunk = rows >= parts * 32 ? Math.ceil(rows / parts / 32) * 32 : Math.ceil(rows / parts)
    const pool = this.pool
    const setup = this.threadSetup()
    const others: Array<Promise<number>> = []
    for (let a = i0 + chunk, g = 0; a < i1; a += chunk, g++) {
      const work = { kind: 'chain-rows', index: this.index, panel: this.panel, i0: a, i1: Math.min(i1, a + chunk) } as const
      // A thread that dies leaves its rows to this thread: the same kernel on the same buffers, the same bits.
      others.push(pool.callOr(g, work, () => this.kernel.unit(work.panel, work.i0, work.i1), setup))
    }
    let mine: number
    try {
      mine = this.kernel.unit(this.panel, i0, Math.min(i1, i0 + chunk))
    } catch (err) {
      others.forEach((q) => { q.catch(() => {}) })
      throw err
    }
    return Promise.all(others).then((found) => {
      if (1 + others.length > this.threadsUsed) this.threadsUsed = 1 + others.length
      this.unitDone([mine, ...found], t)
    })
  }

  /** Ends a unit: overflow is reported at its first entry in row-major order, whichever thread found it. */
  private unitDone (found: number[], t: number): void {
    const bad = Math.min(...found.map((x) => x < 0 ? Infinity : x))
    const current = this.current as ChainProductBuffers
    if (bad !== Infinity) {
      const i = Math.floor(bad / current.n)
      throw new Error(`${this.spec.products[this.index].label} overflowed: entry (${i + 1}, ${bad - i * current.n + 1}) is ${current.next[bad]}; scale the matrices down and retry`)
    }
    this.block++
    if (this.block * this.rowsPerBlock() >= this.r) {
      this.block = 0
      this.panel++
      if (this.panel * PANEL_WIDTH >= current.n) this.finishProduct()
    }
    this.computeMs += monotonicMs() - t
  }

  private finishProduct (): void {
    const current = this.current as ChainProductBuffers
    this.flops += 2 * this.r * this.m * current.n
    this.p = current.next
    this.m = current.n
    this.current = null
    this.setup = null
    this.kernel.release()
    this.panel = 0
    this.block = 0
    this.index++
    // A stored factor no later product needs is let go now.
    const later = new Set(this.spec.products.slice(this.index).map((q) => q.right))
    if (this.cached && !later.has(this.cached.id)) this.cached = null
  }

  /**
   * Layout (float64): version, products done, panels done, row blocks done, compute ms, flops, rows and columns
   * of P, whether a product is under way; then P row by row; then the part of P' already computed: for every row
   * the columns of the finished panels, then the current panel's columns for the rows already done.
   */
  checkpoint (): Checkpoint {
    const { r, m } = this
    const c0 = this.panel * PANEL_WIDTH
    let w = 0
    let doneRows = 0
    const current = this.current
    if (current) {
      w = Math.min(PANEL_WIDTH, current.n - c0)
      doneRows = Math.min(r, this.block * this.rowsPerBlock())
    }
    const out = new Float64Array(HEADER + r * m + (current ? r * c0 + doneRows * w : 0))
    out.set([STATE_VERSION, this.index, this.panel, this.block, this.computeMs, this.flops, r, m, current ? 1 : 0])
    out.set(this.p, HEADER)
    let o = HEADER + r * m
    if (current) {
      const { n, next } = current
      for (let i = 0; i < r; i++) { out.set(next.subarray(i * n, i * n + c0), o); o += c0 }
      for (let i = 0; i < doneRows; i++) { out.set(next.subarray(i * n + c0, i * n + c0 + w), o); o += w }
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
    this.r = r
    this.m = m
    this.p = shared(data.subarray(HEADER, HEADER + r * m))
    let o = HEADER + r * m
    if (inProgress === 1) {
      if (this.finished) bad('a product under way after the last one')
      this.begin()
      const { n, next } = this.current as ChainProductBuffers
      const c0 = panel * PANEL_WIDTH
      const w = Math.min(PANEL_WIDTH, n - c0)
      const doneRows = Math.min(r, block * this.rowsPerBlock())
      if (!Number.isInteger(panel) || !Number.isInteger(block) || panel < 0 || c0 >= n || block < 0 || block >= this.blockCount() ||
        data.length !== o + r * c0 + doneRows * w) bad(`panel ${panel}, block ${block}, ${data.length} numbers`)
      for (let i = 0; i < r; i++) { next.set(data.subarray(o, o + c0), i * n); o += c0 }
      for (let i = 0; i < doneRows; i++) { next.set(data.subarray(o, o + w), i * n + c0); o += w }
      this.panel = panel
      this.block = block
    } else if (data.length !== o || panel !== 0 || block !== 0) {
      bad(`${data.length} numbers between products`)
    }
  }

  result (out: ResultContext): ChainResult {
    if (!this.finished) throw new Error('the run is not finished')
    const { r: rows, m: cols } = this
    // A plain copy: the stored matrix need not keep a shared buffer alive.
    const data = new Float64Array(this.p)
    const Dense = (this.math as unknown as { DenseMatrix: DenseCtor }).DenseMatrix
    const dense = new Dense({ data: Array.from({ length: rows }, (_, i) => Array.from(data.subarray(i * cols, (i + 1) * cols))), size: [rows, cols], datatype: 'number' })
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
      gflops: seconds > 0 ? this.flops / seconds / 1e9 : 0,
      threads: this.threadsUsed
    }
  }

  /**
   * Starts `count` compute threads (default: what `threads()` asks for now) and resolves once they can take work.
   * Optional: advance() starts them too, and uses them from the first unit after they are up.
   */
  async startThreads (count = Math.floor(this.ctx.threads())): Promise<void> {
    const wanted = Math.min(MAX_THREADS, Math.max(1, count || 1))
    if (wanted < 2) return
    this.pool ??= new ThreadPool(undefined, threadLost(this.ctx.log))
    if (this.pool.size < wanted - 1) this.pool.resize(wanted - 1)
    const until = Date.now() + 120_000
    while (this.pool.ready() < wanted - 1 && !this.pool.exhausted) {
      if (Date.now() > until) throw new Error(`compute threads did not start within 120 s (${this.pool.ready()} of ${wanted - 1})`)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }

  async close (): Promise<void> {
    this.p = new Float64Array(0)
    this.current = null
    this.setup = null
    this.cached = null
    this.kernel.release()
    const pool = this.pool
    this.pool = null
    await pool?.close()
  }
}
