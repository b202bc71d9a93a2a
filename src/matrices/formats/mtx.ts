/**
 * Matrix Market exchange format (https://math.nist.gov/MatrixMarket/formats.html): `array` (dense, column by
 * column) and `coordinate` (one `i j value` line per entry, 1-based, unlisted entries 0), field `real`, `double`
 * or `integer`, symmetry `general` or `symmetric` (only one triangle listed). `complex`, `pattern`,
 * `skew-symmetric` and `hermitian` are refused as unsupported.
 */
import { checkShape, formatNumber, type Matrix64, type MatrixLimits, MatrixInputError } from '../matrix.js'
import { bomLength, DECIMAL, INTEGER, parseNumber, quote } from './text.js'

/** Longest line read; an entry line holds two indices and a number. */
const MAX_LINE_BYTES = 1024
const BANNER = /^%%MatrixMarket\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$/i
const BANNER_HELP = 'expected "%%MatrixMarket matrix <coordinate|array> <real|integer> <general|symmetric>"'

/** Parses a Matrix Market file; throws MatrixInputError (400) naming the line, or MatrixTooLargeError (413). */
export function parseMtxMatrix (buf: Uint8Array, limits: MatrixLimits): Matrix64 {
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  let pos = bomLength(buf)
  let line = 0
  /** The next line's content, or null at the end. */
  const next = (): string | null => {
    if (pos >= buf.length) return null
    let end = text.indexOf(10, pos)
    if (end === -1) end = buf.length
    line++
    if (end - pos > MAX_LINE_BYTES) throw new MatrixInputError(`Matrix Market line ${line}: longer than ${MAX_LINE_BYTES} bytes`)
    const content = text.toString('utf8', pos, end)
    pos = end + 1
    return content.trim()
  }
  /** The next line that is neither blank nor a comment. */
  const nextData = (): string | null => {
    for (;;) {
      const l = next()
      if (l === null || (l !== '' && !l.startsWith('%'))) return l
    }
  }

  const first = next()
  if (first === null || first === '') throw new MatrixInputError('Matrix Market: the file is empty')
  const banner = BANNER.exec(first)
  if (!banner) throw new MatrixInputError(`Matrix Market line 1: bad banner ${quote(first)}; ${BANNER_HELP}`)
  const [object, format, field, symmetry] = banner.slice(1).map((s) => s.toLowerCase())
  if (object !== 'matrix') throw new MatrixInputError(`Matrix Market line 1: object "${object}" is not supported; ${BANNER_HELP}`)
  if (format !== 'coordinate' && format !== 'array') throw new MatrixInputError(`Matrix Market line 1: bad format "${format}"; ${BANNER_HELP}`)
  if (field === 'complex' || field === 'pattern') {
    throw new MatrixInputError(`Matrix Market line 1: field "${field}" is not supported (real and integer are)`)
  }
  if (field !== 'real' && field !== 'double' && field !== 'integer') throw new MatrixInputError(`Matrix Market line 1: bad field "${field}"; ${BANNER_HELP}`)
  if (symmetry === 'skew-symmetric' || symmetry === 'hermitian') {
    throw new MatrixInputError(`Matrix Market line 1: symmetry "${symmetry}" is not supported (general and symmetric are)`)
  }
  if (symmetry !== 'general' && symmetry !== 'symmetric') throw new MatrixInputError(`Matrix Market line 1: bad symmetry "${symmetry}"; ${BANNER_HELP}`)
  const grammar = field === 'integer' ? INTEGER : DECIMAL
  const symmetric = symmetry === 'symmetric'

  const sizeLine = nextData()
  if (sizeLine === null) throw new MatrixInputError('Matrix Market: no size line after the banner')
  const sizeFields = sizeLine.split(/\s+/)
  const expected = format === 'coordinate' ? 3 : 2
  if (sizeFields.length !== expected || !sizeFields.every((f) => /^\d{1,15}$/.test(f))) {
    throw new MatrixInputError(`Matrix Market line ${line}: bad size line ${quote(sizeLine)}; expected "${format === 'coordinate' ? 'rows cols entries' : 'rows cols'}"`)
  }
  const [rows, cols, declared] = sizeFields.map(Number)
  checkShape(rows, cols, limits, `Matrix Market size line ${line}`)
  if (symmetric && rows !== cols) throw new MatrixInputError(`Matrix Market line ${line}: a symmetric matrix must be square, not ${rows}×${cols}`)
  const triangle = symmetric ? rows * (rows + 1) / 2 : rows * cols
  const entries = format === 'coordinate' ? declared : triangle
  if (entries > triangle) {
    throw new MatrixInputError(`Matrix Market line ${line}: ${entries} entries declared, more than a ${rows}×${cols}${symmetric ? ' symmetric' : ''} matrix holds (${triangle})`)
  }
  // Each entry needs at least 2 bytes ("0\n") in array format, 6 ("1 1 0\n") in coordinate format: a size line
  // declaring more than the body can hold is refused before anything is allocated for it.
  const leastBytes = entries * (format === 'coordinate' ? 6 : 2)
  if (leastBytes > buf.length - pos + 1) {
    throw new MatrixInputError(`Matrix Market line ${line}: ${entries} entries declared, but only ${buf.length - pos} bytes follow`)
  }

  const data = new Float64Array(rows * cols)
  if (format === 'array') {
    // Column by column; a symmetric matrix lists the lower triangle (diagonal included).
    let k = 0
    let i = 0
    let j = 0
    for (let l = nextData(); l !== null; l = nextData()) {
      for (const token of l.split(/\s+/)) {
        if (k >= entries) throw new MatrixInputError(`Matrix Market line ${line}: more than the ${entries} values of a ${rows}×${cols} array`)
        const x = parseNumber(token, grammar, () => `Matrix Market line ${line} (entry ${i + 1}, ${j + 1})`)
        data[i * cols + j] = x
        if (symmetric) data[j * cols + i] = x
        k++
        i++
        if (i === rows) {
          j++
          i = symmetric ? j : 0
        }
      }
    }
    if (k < entries) throw new MatrixInputError(`Matrix Market: ${entries} values expected for a ${rows}×${cols} array, the file has ${k}`)
    return { rows, cols, data }
  }

  const seen = new Uint8Array(Math.ceil(rows * cols / 8))
  let k = 0
  for (let l = nextData(); l !== null; l = nextData()) {
    const f = l.split(/\s+/)
    if (f.length !== 3) throw new MatrixInputError(`Matrix Market line ${line}: expected "row column value", found ${quote(l)}`)
    if (!/^\d{1,15}$/.test(f[0]) || !/^\d{1,15}$/.test(f[1])) {
      throw new MatrixInputError(`Matrix Market line ${line}: bad coordinate ${quote(f[0] + ' ' + f[1])}; expected 1-based integers`)
    }
    let i = Number(f[0])
    let j = Number(f[1])
    if (i < 1 || i > rows || j < 1 || j > cols) {
      throw new MatrixInputError(`Matrix Market line ${line}: entry (${i}, ${j}) is outside the ${rows}×${cols} matrix`)
    }
    if (k >= entries) throw new MatrixInputError(`Matrix Market line ${line}: more entries than the ${entries} declared`)
    const x = parseNumber(f[2], grammar, () => `Matrix Market line ${line} (entry ${i}, ${j})`)
    // A symmetric file lists one triangle; (i, j) and (j, i) are the same entry.
    if (symmetric && j > i) [i, j] = [j, i]
    const bit = (i - 1) * cols + (j - 1)
    if ((seen[bit >> 3] & (1 << (bit & 7))) !== 0) {
      throw new MatrixInputError(`Matrix Market line ${line}: duplicate entry (${f[0]}, ${f[1]})`)
    }
    seen[bit >> 3] |= 1 << (bit & 7)
    data[(i - 1) * cols + (j - 1)] = x
    if (symmetric) data[(j - 1) * cols + (i - 1)] = x
    k++
  }
  if (k < entries) throw new MatrixInputError(`Matrix Market: ${entries} entries declared, the file has ${k}`)
  return { rows, cols, data }
}

/** The matrix in `array real general` format (column by column), one column per chunk. */
export function * writeMtxMatrix (m: Matrix64, name = ''): Generator<string> {
  const { rows, cols, data } = m
  const title = name.replace(/[\r\n]+/g, ' ').slice(0, 200)
  yield `%%MatrixMarket matrix array real general\n${title ? `% ${title}\n` : ''}${rows} ${cols}\n`
  for (let j = 0; j < cols; j++) {
    const column = new Array<string>(rows)
    for (let i = 0; i < rows; i++) column[i] = formatNumber(data[i * cols + j])
    yield column.join('\n') + '\n'
  }
}
