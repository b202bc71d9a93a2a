/**
 * One unit of the random-matrix product, the same on the main thread and in any pool thread: columns
 * [col0, col0 + width) of C' = M·C, computed by mathjs, and their Frobenius norm.
 *
 * Layout (what mathjs multiplies fastest, measured in docs/benchmarks.md): M is drawn row-major into one shared
 * Float64Array; each thread copies it once per step into plain row arrays that mathjs sees as row blocks of
 * ROW_BLOCK rows (DenseMatrix objects adopting those rows, built once per run); each column of C is copied into a plain array held by a
 * 1-D DenseMatrix, and `math.multiply(block, column)` runs mathjs's matrix-vector loop, which walks both
 * operands with unit stride. Every entry of C' is mathjs's sum M[i][0]·C[0][j] + M[i][1]·C[1][j] + … in that
 * order, exactly as the panel product `math.multiply(M, panel)` computes it, so the bits do not depend on how
 * columns are grouped, on the block size, or on which thread computes them.
 */
import type { Matrix } from 'mathjs'
import { mathCore as math } from '../math-core.js'

/** Rows of M per mathjs block: one block and a group of columns stay in the core's cache. */
export const ROW_BLOCK = 32

/** Columns per unit of work; also the grouping of the squared norms (part of the result's bits). */
export const PANEL_WIDTH = 32

const VectorMatrix = math.DenseMatrix as unknown as new (init: { data: number[], size: [number], datatype: 'number' }) => Matrix
const BlockMatrix = math.DenseMatrix as unknown as new (init: { data: number[][], size: [number, number], datatype: 'number' }) => Matrix

/** The buffers a product runs on: M (row-major) and the two n×n column-major halves of C / C'. */
export interface ProductBuffers {
  n: number
  /** M_k, row-major, n². */
  m: Float64Array
  /** C and C', column-major, n² each; which one is the source alternates by step. */
  c: [Float64Array, Float64Array]
}

/** Reusable mathjs views of one thread on the shared buffers. */
export class ProductKernel {
  /** M's rows as plain arrays of packed doubles, which the blocks adopt; refreshed from `m` for each new M. */
  private readonly rows: number[][] = []
  /** Which M the rows hold (-1: none yet). */
  private rowsOf = -1
  private readonly blocks: Matrix[] = []
  private readonly blockStart: number[] = []
  /** One reusable column vector per column of a group. */
  private readonly columns: Array<{ data: number[], matrix: Matrix }> = []

  /** `rowBlock` other than ROW_BLOCK is for measuring only: it does not change the bits. */
  constructor (readonly buffers: ProductBuffers, rowBlock = ROW_BLOCK) {
    const { n, m } = buffers
    for (let i = 0; i < n; i++) this.rows.push(Array.from(m.subarray(i * n, (i + 1) * n)))
    for (let r = 0; r < n; r += rowBlock) {
      const h = Math.min(rowBlock, n - r)
      this.blocks.push(new BlockMatrix({ data: this.rows.slice(r, r + h), size: [h, n], datatype: 'number' }))
      this.blockStart.push(r)
    }
    // Packed doubles from the start (pushing numbers), then only overwritten: mathjs reads them as they are.
    for (let j = 0; j < PANEL_WIDTH; j++) {
      const data: number[] = []
      for (let i = 0; i < n; i++) data.push(0.5)
      this.columns.push({ data, matrix: new VectorMatrix({ data, size: [n], datatype: 'number' }) })
    }
  }

  /**
   * Columns [col0, col0 + width) of c[1 - src] = M·c[src]. Returns their Frobenius norm as
   * `math.norm(panel, 'fro')` computes it: squares added row by row, left to right, from 0.
   */
  group (k: number, src: 0 | 1, col0: number, width: number): number {
    const { n, m } = this.buffers
    if (this.rowsOf !== k) {
      // A new M_k in the shared buffer (its writer tells which k it is): copy it into the rows mathjs reads.
      for (let i = 0; i < n; i++) {
        const row = this.rows[i]
        const at = i * n
        for (let j = 0; j < n; j++) row[j] = m[at + j]
      }
      this.rowsOf = k
    }
    const from = this.buffers.c[src]
    const to = this.buffers.c[1 - src]
    for (let j = 0; j < width; j++) {
      const v = this.columns[j].data
      const base = (col0 + j) * n
      for (let i = 0; i < n; i++) v[i] = from[base + i]
    }
    // Block by block, so that one block of M is re-read from cache for every column of the group.
    for (let b = 0; b < this.blocks.length; b++) {
      for (let j = 0; j < width; j++) {
        const part = (math.multiply(this.blocks[b], this.columns[j].matrix) as Matrix).valueOf() as number[]
        const at = (col0 + j) * n + this.blockStart[b]
        for (let i = 0; i < part.length; i++) to[at + i] = part[i]
      }
    }
    let fro = 0
    for (let i = 0; i < n; i++) {
      for (let j = col0; j < col0 + width; j++) {
        const x = to[j * n + i]
        fro += x * x
      }
    }
    return Math.sqrt(fro)
  }
}
