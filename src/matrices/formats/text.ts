import { MAX_DIM, type MatrixLimits, MatrixInputError, MatrixTooLargeError } from '../matrix.js'

/** A decimal number as CSV and Matrix Market write it: sign, digits, optional fraction and exponent. */
export const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/
/** An integer (Matrix Market `integer` field). */
export const INTEGER = /^[+-]?\d+$/
/** A JSON number, exactly as RFC 8259 spells it. */
export const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/
/** How NaN and the infinities are commonly written (numpy, Python, R, MATLAB exports). */
const NON_FINITE = /^[+-]?(?:nan|inf|infinity)$/i

/** Longest token quoted back in an error message. */
const QUOTE_MAX = 40

/** A token for an error message: quoted, cut if long. */
export function quote (token: string): string {
  return JSON.stringify(token.length > QUOTE_MAX ? token.slice(0, QUOTE_MAX) + '…' : token)
}

/**
 * The number a token spells under `grammar`, or a MatrixInputError naming `where`. Number() alone would take
 * "", "0x1f", " 1 " and "Infinity"; the grammar is checked first. A literal beyond float64 (1e999) is refused too.
 */
export function parseNumber (token: string, grammar: RegExp, place: string | (() => string)): number {
  // The place is only spelled out for a message: building it for every number would cost more than the parse.
  if (grammar.test(token)) {
    const x = Number(token)
    if (Number.isFinite(x)) return x
  }
  const where = typeof place === 'string' ? place : place()
  if (!grammar.test(token)) {
    if (NON_FINITE.test(token)) throw new MatrixInputError(`${where}: ${quote(token)}: NaN and ±Infinity are not accepted`)
    if (token === '') throw new MatrixInputError(`${where}: empty field, expected a number`)
    throw new MatrixInputError(`${where}: ${quote(token)} is not a number`)
  }
  const x = Number(token)
  if (!Number.isFinite(x)) throw new MatrixInputError(`${where}: ${quote(token)} overflows float64 (±Infinity is not accepted)`)
  return x
}

/** 1-based line and column of byte `pos` (counted only when an error is reported). */
export function lineColumn (buf: Uint8Array, pos: number): { line: number, column: number } {
  let line = 1
  let start = 0
  for (let i = 0; i < pos && i < buf.length; i++) {
    if (buf[i] === 10) {
      line++
      start = i + 1
    }
  }
  return { line, column: pos - start + 1 }
}

/** Bytes of a UTF-8 byte order mark at the start, if any (0 or 3). */
export function bomLength (buf: Uint8Array): number {
  return buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0
}

const BLOCK = 65536

/**
 * Numbers collected while the shape is not known yet (JSON, CSV), in fixed blocks, so nothing grows by
 * doubling. Refuses (413) the number past the limit, and a row or column past MAX_DIM, as soon as it is seen.
 */
export class NumberCollector {
  private blocks: Float64Array[] = []
  private current = new Float64Array(0)
  private fill = 0
  count = 0
  private readonly maxCount: number

  constructor (limits: MatrixLimits, private readonly what: string) {
    this.maxCount = Math.floor(limits.maxBytes / 8)
  }

  push (x: number): void {
    if (this.count >= this.maxCount) {
      throw new MatrixTooLargeError(`${this.what}: more than ${this.maxCount} numbers, beyond MAX_MATRIX_BYTES (${this.maxCount * 8} bytes of float64)`)
    }
    if (this.fill === this.current.length) {
      this.current = new Float64Array(Math.min(BLOCK, this.maxCount - this.count))
      this.blocks.push(this.current)
      this.fill = 0
    }
    this.current[this.fill++] = x
    this.count++
  }

  /** One array of all the numbers; the blocks are released. */
  take (): Float64Array {
    const out = new Float64Array(this.count)
    let offset = 0
    for (const block of this.blocks) {
      const n = Math.min(block.length, this.count - offset)
      out.set(n === block.length ? block : block.subarray(0, n), offset)
      offset += n
    }
    this.blocks = []
    this.current = new Float64Array(0)
    return out
  }
}

/** Refuses (413) a row count or column count beyond MAX_DIM. */
export function checkDim (n: number, which: 'rows' | 'columns', what: string): void {
  if (n > MAX_DIM) throw new MatrixTooLargeError(`${what}: more than ${MAX_DIM} ${which}, the most accepted`)
}
