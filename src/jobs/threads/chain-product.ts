/**
 * One unit of a matmul or matpow product P' = P·R, the same on the main thread and in any pool thread: rows
 * [i0, i1) of the columns of one panel of P', computed by mathjs.
 *
 * Layout (that of lyapunov's product, src/jobs/threads/product.ts): P, R and P' are row-major Float64Arrays on
 * SharedArrayBuffers. Each thread copies the rows of P it is asked for into plain arrays (once per product) that
 * mathjs sees as blocks of ROW_BLOCK rows, copies the panel's columns of R into plain arrays held by 1-D
 * DenseMatrix objects, and runs `math.multiply(block, column)`, mathjs's matrix-vector loop. Every entry of P' is
 * mathjs's sum P[i][0]·R[0][j] + P[i][1]·R[1][j] + … in that order, as one stock `math.multiply(P, R)` computes it,
 * so the bits do not depend on how rows and columns are cut into units nor on which thread computes them.
 */
import type { Matrix } from 'mathjs'
import { mathCore as math } from '../math-core.js'

/** Columns of R per panel: the unit of work across a product's columns. */
export const CHAIN_PANEL = 32
/** Rows of P per mathjs block: one block and the panel's columns stay in the core's cache. */
export const CHAIN_ROW_BLOCK = 32

const VectorMatrix = math.DenseMatrix as unknown as new (init: { data: number[], size: [number], datatype: 'number' }) => Matrix
const BlockMatrix = math.DenseMatrix as unknown as new (init: { data: number[][], size: [number, number], datatype: 'number' }) => Matrix

/** One product's operands: P (r×m), R (m×n) and P' (r×n), row-major. */
export interface ChainProductBuffers {
  /** Which product of the run (the kernel keeps its copies of P until this changes). */
  index: number
  r: number
  m: number
  n: number
  p: Float64Array
  right: Float64Array
  next: Float64Array
}

/** Reusable mathjs views of one thread on a product's buffers. */
export class ChainKernel {
  private buffers: ChainProductBuffers | null = null
  /** P's rows as plain arrays, copied the first time a unit needs them (a thread only copies the rows it computes). */
  private rows: Array<number[] | undefined> = []
  /** The mathjs blocks over those rows, by first row (a unit's rows always start blocks at the same offsets). */
  private blocks = new Map<number, Matrix>()
  private readonly columns: Array<{ data: number[], vector: Matrix }> = []
  /** Which panel of which product `columns` holds. */
  private columnsOf = ''

  /** Makes `b` the product the next units compute (a no-op when it already is). */
  product (b: ChainProductBuffers): void {
    if (this.buffers?.index === b.index && this.buffers.p === b.p) return
    this.buffers = b
    this.rows = new Array(b.r)
    this.blocks = new Map()
    this.columnsOf = ''
    if (this.columns[0]?.data.length !== b.m) {
      this.columns.length = 0
      for (let j = 0; j < CHAIN_PANEL; j++) {
        // Pushed as doubles from the start, then only overwritten: mathjs reads them as packed doubles.
        const data: number[] = []
        for (let i = 0; i < b.m; i++) data.push(0.5)
        this.columns.push({ data, vector: new VectorMatrix({ data, size: [b.m], datatype: 'number' }) })
      }
    }
  }

  /**
   * Rows [i0, i1) of panel `panel` of P'. Returns the row-major index in P' of the first entry that is not finite
   * (rows in order, then columns), or -1.
   */
  unit (panel: number, i0: number, i1: number): number {
    const b = this.buffers
    if (!b) throw new Error('chain kernel used before its product was set')
    const { m, n, p, right, next } = b
    const j0 = panel * CHAIN_PANEL
    const w = Math.min(CHAIN_PANEL, n - j0)
    const key = `${b.index}:${panel}`
    if (this.columnsOf !== key) {
      // Row by row: R is row-major, so each row's w entries are read in one or two cache lines.
      const columns = this.columns
      for (let i = 0; i < m; i++) {
        const at = i * n + j0
        for (let j = 0; j < w; j++) columns[j].data[i] = right[at + j]
      }
      this.columnsOf = key
    }
    for (let i = i0; i < i1; i++) {
      if (this.rows[i] !== undefined) continue
      // Pushed doubles: a packed array of doubles, the elements kind mathjs's loop reads fastest.
      const row: number[] = []
      const at = i * m
      for (let k = 0; k < m; k++) row.push(p[at + k])
      this.rows[i] = row
    }
    let bad = -1
    for (let r0 = i0; r0 < i1; r0 += CHAIN_ROW_BLOCK) {
      const h = Math.min(CHAIN_ROW_BLOCK, i1 - r0)
      // The block adopts the row arrays: no copy. Built once per product and first row (mathjs validates its shape).
      let block = this.blocks.get(r0)
      if (block === undefined || block.size()[0] !== h) {
        block = new BlockMatrix({ data: this.rows.slice(r0, r0 + h) as number[][], size: [h, m], datatype: 'number' })
        this.blocks.set(r0, block)
      }
      for (let j = 0; j < w; j++) {
        const part = (math.multiply(block, this.columns[j].vector) as Matrix).valueOf() as number[]
        for (let t = 0; t < h; t++) {
          const x = part[t]
          const at = (r0 + t) * n + j0 + j
          next[at] = x
          // The smallest row-major index is the first non-finite entry in rows-then-columns order.
          if (!Number.isFinite(x) && (bad < 0 || at < bad)) bad = at
        }
      }
    }
    return bad
  }

  /** Lets the copies of P go (the run ends or moves to its next product). */
  release (): void {
    this.buffers = null
    this.rows = []
    this.blocks = new Map()
    this.columnsOf = ''
  }
}
