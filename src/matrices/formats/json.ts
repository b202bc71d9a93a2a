/**
 * JSON matrices: an array of rows, each an array of numbers, `[[1, 2], [3, 4]]`. Read byte by byte from the body
 * (no JSON.parse: an 8192×8192 matrix as nested arrays would cost the server several times its size), numbers
 * converted one token at a time with Number() after checking RFC 8259's grammar.
 */
import { formatNumber, type Matrix64, type MatrixLimits, MatrixInputError } from '../matrix.js'
import { bomLength, checkDim, JSON_NUMBER, lineColumn, NumberCollector, parseNumber } from './text.js'

const WS = new Uint8Array(256)
for (const c of [0x20, 0x09, 0x0a, 0x0d]) WS[c] = 1
// Bytes that end a number token.
const END = new Uint8Array(256)
for (const c of [0x20, 0x09, 0x0a, 0x0d, 0x2c, 0x5b, 0x5d, 0x7b, 0x7d, 0x22, 0x3a]) END[c] = 1

/** Parses a JSON array of rows into a matrix; throws MatrixInputError (400) or MatrixTooLargeError (413). */
export function parseJsonMatrix (buf: Uint8Array, limits: MatrixLimits): Matrix64 {
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const numbers = new NumberCollector(limits, 'JSON')
  let pos = bomLength(buf)
  const skip = (): void => { while (pos < buf.length && WS[buf[pos]] === 1) pos++ }
  const at = (p = pos): string => {
    const { line, column } = lineColumn(buf, p)
    return `line ${line}, column ${column}`
  }
  const describe = (): string => pos >= buf.length ? 'the end of the file' : JSON.stringify(String.fromCharCode(buf[pos]))
  skip()
  if (pos >= buf.length) throw new MatrixInputError('JSON: the file is empty')
  if (buf[pos] !== 0x5b) throw new MatrixInputError(`JSON (${at()}): expected an array of rows "[[…], …]", found ${describe()}`)
  pos++
  skip()
  if (buf[pos] === 0x5d) throw new MatrixInputError('JSON: the matrix is empty ([])')
  let rows = 0
  let cols = -1
  for (;;) {
    skip()
    if (buf[pos] !== 0x5b) {
      throw new MatrixInputError(`JSON (${at()}): row ${rows + 1} is not an array of numbers; found ${describe()}`)
    }
    pos++
    rows++
    checkDim(rows, 'rows', 'JSON')
    let n = 0
    skip()
    if (buf[pos] === 0x5d) throw new MatrixInputError(`JSON (${at()}): row ${rows} is empty`)
    for (;;) {
      skip()
      const start = pos
      while (pos < buf.length && END[buf[pos]] !== 1) pos++
      n++
      // A token longer than any number is cut: the message needs only its start, and the heap is kept small.
      let token = text.toString('latin1', start, Math.min(pos, start + 400))
      if (start === pos) {
        // Not a number token at all: a string, an array, an object or a missing value.
        token = pos >= buf.length ? '' : text.toString('utf8', pos, Math.min(buf.length, pos + 20)).split(/[,\]\n]/)[0]
      }
      const x = parseNumber(token, JSON_NUMBER, () => `JSON row ${rows}, column ${n} (${at(start)})`)
      if (cols !== -1 && n > cols) {
        throw new MatrixInputError(`JSON (${at(start)}): ragged rows: row ${rows} has more than the ${cols} numbers of row 1`)
      }
      checkDim(n, 'columns', 'JSON')
      numbers.push(x)
      skip()
      if (buf[pos] === 0x2c) { pos++; continue }
      if (buf[pos] === 0x5d) { pos++; break }
      throw new MatrixInputError(`JSON (${at()}): expected "," or "]" after row ${rows}, column ${n}; found ${describe()}`)
    }
    if (cols === -1) cols = n
    else if (n !== cols) throw new MatrixInputError(`JSON (${at()}): ragged rows: row ${rows} has ${n} numbers, row 1 has ${cols}`)
    skip()
    if (buf[pos] === 0x2c) { pos++; continue }
    if (buf[pos] === 0x5d) { pos++; break }
    throw new MatrixInputError(`JSON (${at()}): expected "," or "]" after row ${rows}; found ${describe()}`)
  }
  skip()
  if (pos < buf.length) throw new MatrixInputError(`JSON (${at()}): unexpected ${describe()} after the matrix`)
  return { rows, cols, data: numbers.take() }
}

/** Rows per chunk a writer yields (at most ~1 MB of text at 8192 columns). */
export function rowsPerChunk (cols: number): number {
  return Math.max(1, Math.floor(65536 / cols))
}

/** The matrix as JSON text, a few rows per chunk. */
export function * writeJsonMatrix (m: Matrix64): Generator<string> {
  const { rows, cols, data } = m
  const step = rowsPerChunk(cols)
  for (let r0 = 0; r0 < rows; r0 += step) {
    const parts: string[] = []
    for (let i = r0; i < Math.min(rows, r0 + step); i++) {
      const row = new Array<string>(cols)
      for (let j = 0; j < cols; j++) row[j] = formatNumber(data[i * cols + j])
      parts.push((i === 0 ? '[[' : ',\n[') + row.join(',') + ']')
    }
    yield parts.join('')
  }
  yield ']\n'
}
