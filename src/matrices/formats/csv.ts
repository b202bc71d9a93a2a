/**
 * CSV matrices: one row per line, numbers separated by commas. A UTF-8 byte order mark, CRLF line ends, spaces
 * around fields, blank lines and one header line (a first line in which no field is a number) are accepted.
 */
import { formatNumber, type Matrix64, type MatrixLimits, MatrixInputError } from '../matrix.js'
import { rowsPerChunk } from './json.js'
import { bomLength, checkDim, DECIMAL, NumberCollector, parseNumber } from './text.js'

/** Longest line read: 8192 fields of up to 63 characters and their commas. Longer lines are refused before
 * they are decoded, so a body with no line break cannot become one huge string. */
const MAX_LINE_BYTES = 8192 * 64

const unquote = (field: string): string => {
  const f = field.trim()
  return f.length >= 2 && f.startsWith('"') && f.endsWith('"') ? f.slice(1, -1).trim() : f
}

/** Parses CSV into a matrix; throws MatrixInputError (400) naming line and column, or MatrixTooLargeError (413). */
export function parseCsvMatrix (buf: Uint8Array, limits: MatrixLimits): Matrix64 {
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const numbers = new NumberCollector(limits, 'CSV')
  let pos = bomLength(buf)
  let line = 0
  let rows = 0
  let cols = -1
  let firstLine = true
  let headerLine = 0
  while (pos < buf.length) {
    let end = text.indexOf(10, pos)
    if (end === -1) end = buf.length
    line++
    const stop = end > pos && buf[end - 1] === 13 ? end - 1 : end
    if (stop - pos > MAX_LINE_BYTES) {
      throw new MatrixInputError(`CSV line ${line}: longer than ${MAX_LINE_BYTES} bytes (at most ${8192} numbers of up to 63 characters)`)
    }
    const content = text.toString('utf8', pos, stop)
    pos = end + 1
    if (content.trim() === '') continue
    const fields = content.split(',')
    if (firstLine) {
      firstLine = false
      if (fields.every((f) => !DECIMAL.test(unquote(f)))) { // a header line
        headerLine = line
        continue
      }
    }
    rows++
    checkDim(rows, 'rows', 'CSV')
    checkDim(fields.length, 'columns', 'CSV')
    if (cols !== -1 && fields.length !== cols) {
      throw new MatrixInputError(`CSV line ${line}: ragged rows: ${fields.length} fields where the first row has ${cols}`)
    }
    for (let j = 0; j < fields.length; j++) {
      try {
        numbers.push(parseNumber(unquote(fields[j]), DECIMAL, () => `CSV line ${line}, column ${j + 1}`))
      } catch (err) {
        if (err instanceof MatrixInputError && /[;\t]/.test(fields[j])) err.message += ' (the separator is a comma)'
        throw err
      }
    }
    cols = fields.length
  }
  if (rows === 0) {
    throw new MatrixInputError(headerLine > 0
      ? `CSV: no row of numbers; line ${headerLine} was taken as a header (fields that are not numbers, separated by commas)`
      : 'CSV: the file is empty (no row of numbers)')
  }
  return { rows, cols, data: numbers.take() }
}

/** The matrix as CSV (no header, LF line ends), a few rows per chunk. */
export function * writeCsvMatrix (m: Matrix64): Generator<string> {
  const { rows, cols, data } = m
  const step = rowsPerChunk(cols)
  for (let r0 = 0; r0 < rows; r0 += step) {
    const lines: string[] = []
    for (let i = r0; i < Math.min(rows, r0 + step); i++) {
      const row = new Array<string>(cols)
      for (let j = 0; j < cols; j++) row[j] = formatNumber(data[i * cols + j])
      lines.push(row.join(','))
    }
    yield lines.join('\n') + '\n'
  }
}
