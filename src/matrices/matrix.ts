import { endianness } from 'node:os'
import { lazyCrypto } from '../lazy-crypto.js'

/** A dense matrix: rows × cols float64 numbers, row after row. */
export interface Matrix64 {
  rows: number
  cols: number
  data: Float64Array
}

/** Largest number of rows, and of columns, a stored matrix may have. */
export const MAX_DIM = 8192

/** What a parser may accept. */
export interface MatrixLimits {
  /** Most bytes of float64 data (rows × cols × 8), MAX_MATRIX_BYTES. */
  maxBytes: number
}

/** Bad input: the message says what and where (→ 400). Nothing was stored. */
export class MatrixInputError extends Error {
  readonly statusCode = 400
  override name = 'MatrixInputError'
}

/** Input beyond a limit: dimensions or data size (→ 413). Nothing was stored. */
export class MatrixTooLargeError extends Error {
  readonly statusCode = 413
  override name = 'MatrixTooLargeError'
}

/**
 * Checks a shape before anything is allocated for it: each dimension 1..MAX_DIM, rows × cols × 8 within the limit.
 * `what` names the source in the messages (e.g. ".npy shape").
 */
export function checkShape (rows: number, cols: number, limits: MatrixLimits, what: string): void {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols < 0) {
    throw new MatrixInputError(`${what}: ${rows}×${cols} is not a shape`)
  }
  if (rows === 0 || cols === 0) throw new MatrixInputError(`${what}: the matrix is empty (${rows}×${cols})`)
  if (rows > MAX_DIM || cols > MAX_DIM) {
    throw new MatrixTooLargeError(`${what}: ${rows}×${cols} is beyond the largest matrix accepted, ${MAX_DIM}×${MAX_DIM}`)
  }
  const bytes = rows * cols * 8
  if (bytes > limits.maxBytes) {
    throw new MatrixTooLargeError(`${what}: ${rows}×${cols} is ${bytes} bytes of float64 data, beyond MAX_MATRIX_BYTES (${limits.maxBytes})`)
  }
}

const LITTLE_ENDIAN_HOST = endianness() === 'LE'

/** The canonical bytes of a matrix: float64 little-endian, row-major. A view, not a copy, on little-endian hosts. */
export function canonicalBytes (data: Float64Array): Buffer {
  if (LITTLE_ENDIAN_HOST) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  const out = Buffer.allocUnsafe(data.byteLength)
  for (let i = 0; i < data.length; i++) out.writeDoubleLE(data[i], i * 8)
  return out
}

/** Float64 numbers from canonical bytes (copied into an aligned array of their own). */
export function fromCanonicalBytes (bytes: Uint8Array): Float64Array {
  if (bytes.byteLength % 8 !== 0) throw new Error(`matrix data of ${bytes.byteLength} bytes is not a whole number of float64`)
  const out = new Float64Array(bytes.byteLength / 8)
  if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(out.buffer).set(bytes)
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true)
  }
  return out
}

/** sha256 (hex) of the canonical bytes; in numpy: hashlib.sha256(np.ascontiguousarray(a, dtype='<f8').tobytes()). */
export function matrixSha256 (data: Float64Array): string {
  return lazyCrypto().createHash('sha256').update(canonicalBytes(data)).digest('hex')
}

/** The shortest text that reads back to the same double (String() is that), keeping the sign of -0. */
export function formatNumber (x: number): string {
  return x === 0 && 1 / x < 0 ? '-0' : String(x)
}

/** Throws naming (row, col), 1-based, when a value is NaN or ±Infinity. */
export function requireFinite (x: number, row: number, col: number, where: string): void {
  if (!Number.isFinite(x)) {
    throw new MatrixInputError(`${where}: entry (${row}, ${col}) is ${x}; NaN and ±Infinity are not accepted`)
  }
}

/** Float64 numbers over stored canonical bytes: a view when aligned on a little-endian host, a copy otherwise. */
export function viewCanonicalBytes (bytes: Buffer): Float64Array {
  if (LITTLE_ENDIAN_HOST && bytes.byteOffset % 8 === 0 && bytes.byteLength % 8 === 0) {
    return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8)
  }
  return fromCanonicalBytes(bytes)
}
