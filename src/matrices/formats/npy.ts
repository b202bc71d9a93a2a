/**
 * NumPy .npy files (format versions 1.0, 2.0 and 3.0, as numpy's lib/format.py writes them): dtypes `<f8 <f4
 * <i8 <i4` and their big-endian variants, C or Fortran order, 2-D only. The header is a Python dict literal; it is
 * read by a small parser that knows strings, True/False and tuples of integers, and is never evaluated. Object
 * arrays (pickles) are refused: nothing is ever unpickled.
 */
import { canonicalBytes, checkShape, fromCanonicalBytes, type Matrix64, type MatrixLimits, MatrixInputError, requireFinite } from '../matrix.js'

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]) // \x93NUMPY
/** Longest header read (numpy writes a few hundred bytes at most for a 2-D array). */
const MAX_HEADER_BYTES = 65536

interface Dtype { size: number, read: (view: DataView, offset: number) => number, float: boolean }
const DTYPES: Record<string, Dtype> = {
  '<f8': { size: 8, float: true, read: (v, o) => v.getFloat64(o, true) },
  '>f8': { size: 8, float: true, read: (v, o) => v.getFloat64(o, false) },
  '<f4': { size: 4, float: true, read: (v, o) => v.getFloat32(o, true) },
  '>f4': { size: 4, float: true, read: (v, o) => v.getFloat32(o, false) },
  '<i8': { size: 8, float: false, read: (v, o) => Number(v.getBigInt64(o, true)) },
  '>i8': { size: 8, float: false, read: (v, o) => Number(v.getBigInt64(o, false)) },
  '<i4': { size: 4, float: false, read: (v, o) => v.getInt32(o, true) },
  '>i4': { size: 4, float: false, read: (v, o) => v.getInt32(o, false) }
}

type HeaderValue = string | boolean | Array<number | string> | { list: true }

/** Reads the header dict: `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }`. */
function parseHeader (header: string): Record<string, HeaderValue> {
  let pos = 0
  const fail = (what: string): never => {
    throw new MatrixInputError(`.npy header: ${what} at character ${pos + 1} of ${JSON.stringify(header.slice(0, 120))}`)
  }
  const ws = (): void => { while (pos < header.length && /\s/.test(header[pos])) pos++ }
  const str = (): string => {
    const q = header[pos]
    const end = header.indexOf(q, pos + 1)
    if (end === -1) fail('unterminated string')
    const s = header.slice(pos + 1, end)
    if (s.includes('\\')) fail('escape sequences are not accepted')
    pos = end + 1
    return s
  }
  const value = (): HeaderValue => {
    ws()
    const c = header[pos]
    if (c === "'" || c === '"') return str()
    if (header.startsWith('True', pos)) { pos += 4; return true }
    if (header.startsWith('False', pos)) { pos += 5; return false }
    if (c === '[') return { list: true } // a structured dtype's field list; refused by the caller
    if (c === '(') {
      pos++
      const items: Array<number | string> = []
      for (;;) {
        ws()
        if (header[pos] === ')') { pos++; return items }
        const m = /^\d+L?/.exec(header.slice(pos, pos + 40))
        if (!m) fail('expected an integer in the shape')
        const digits = (m as RegExpExecArray)[0].replace('L', '')
        // Digits beyond any real dimension are kept as text, so no precision is lost and the shape check refuses them.
        items.push(digits.length > 15 ? digits : Number(digits))
        pos += (m as RegExpExecArray)[0].length
        ws()
        if (header[pos] === ',') pos++
        else if (header[pos] !== ')') fail('expected "," or ")" in the shape')
      }
    }
    return fail('unexpected value')
  }
  // No prototype: a key such as '__proto__' is an ordinary (unexpected) key, never the object's prototype.
  const out: Record<string, HeaderValue> = Object.create(null)
  ws()
  if (header[pos] !== '{') fail('expected "{"')
  pos++
  for (;;) {
    ws()
    if (header[pos] === '}') { pos++; break }
    if (header[pos] !== "'" && header[pos] !== '"') fail('expected a quoted key')
    const key = str()
    ws()
    if (header[pos] !== ':') fail('expected ":"')
    pos++
    const v = value()
    if (Object.hasOwn(out, key)) fail(`duplicate key "${key}"`)
    out[key] = v
    if ((v as { list?: true }).list) return out
    ws()
    if (header[pos] === ',') pos++
    else if (header[pos] !== '}') fail('expected "," or "}"')
  }
  ws()
  if (pos !== header.length) fail('unexpected text after the dict')
  return out
}

/** Parses a .npy file; throws MatrixInputError (400) or MatrixTooLargeError (413), having allocated nothing for
 * the data until its declared size was checked against the limit and against the bytes actually present. */
export function parseNpyMatrix (buf: Uint8Array, limits: MatrixLimits): Matrix64 {
  if (buf.length === 0) throw new MatrixInputError('.npy: the file is empty')
  if (buf.length < 10 || !Buffer.from(buf.buffer, buf.byteOffset, 6).equals(MAGIC)) {
    throw new MatrixInputError('.npy: bad magic; the file does not start with "\\x93NUMPY"')
  }
  const major = buf[6]
  const minor = buf[7]
  if (major < 1 || major > 3 || minor !== 0) throw new MatrixInputError(`.npy: unsupported format version ${major}.${minor} (1.0, 2.0 and 3.0 are)`)
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const prefix = major === 1 ? 10 : 12
  if (buf.length < prefix) throw new MatrixInputError('.npy: truncated before the header length')
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true)
  if (headerLength > MAX_HEADER_BYTES) throw new MatrixInputError(`.npy: header of ${headerLength} bytes, more than the ${MAX_HEADER_BYTES} accepted`)
  if (prefix + headerLength > buf.length) throw new MatrixInputError(`.npy: truncated header (${headerLength} bytes declared, ${buf.length - prefix} present)`)
  const header = Buffer.from(buf.buffer, buf.byteOffset + prefix, headerLength).toString(major === 3 ? 'utf8' : 'latin1')
  const dict = parseHeader(header)
  for (const key of Object.keys(dict)) {
    if (!['descr', 'fortran_order', 'shape'].includes(key)) throw new MatrixInputError(`.npy header: unexpected key "${key}"`)
  }
  const descr = dict.descr
  if (typeof descr === 'object' && !Array.isArray(descr)) throw new MatrixInputError('.npy: structured dtypes are not supported (a plain numeric array is)')
  if (typeof descr !== 'string') throw new MatrixInputError('.npy header: "descr" must be a dtype string such as \'<f8\'')
  if (/O/.test(descr)) throw new MatrixInputError(`.npy: dtype '${descr}' is an object array; refused (pickled data is never loaded)`)
  const dtype = DTYPES[descr]
  if (!dtype) throw new MatrixInputError(`.npy: dtype '${descr}' is not supported; use <f8, <f4, <i8 or <i4 (or big-endian >)`)
  if (typeof dict.fortran_order !== 'boolean') throw new MatrixInputError('.npy header: "fortran_order" must be True or False')
  const shape = dict.shape
  if (!Array.isArray(shape)) throw new MatrixInputError('.npy header: "shape" must be a tuple')
  if (shape.length !== 2) throw new MatrixInputError(`.npy: shape (${shape.join(', ')}${shape.length === 1 ? ',' : ''}) is not 2-D`)
  const [rows, cols] = shape.map((d) => typeof d === 'string' ? Number.MAX_SAFE_INTEGER : d)
  checkShape(rows, cols, limits, '.npy shape')
  const offset = prefix + headerLength
  const need = rows * cols * dtype.size
  const have = buf.length - offset
  if (have < need) throw new MatrixInputError(`.npy: truncated data: shape (${rows}, ${cols}) of ${descr} needs ${need} bytes, the file has ${have}`)
  if (have > need) throw new MatrixInputError(`.npy: ${have - need} bytes after the data of shape (${rows}, ${cols}) of ${descr}`)

  const fortran = dict.fortran_order
  let data: Float64Array
  if (descr === '<f8' && !fortran) {
    // The canonical layout already: one copy into aligned memory.
    data = fromCanonicalBytes(buf.subarray(offset, offset + need))
  } else {
    data = new Float64Array(rows * cols)
    for (let k = 0; k < rows * cols; k++) {
      const x = dtype.read(view, offset + k * dtype.size)
      const i = fortran ? k % rows : Math.floor(k / cols)
      const j = fortran ? Math.floor(k / rows) : k % cols
      data[i * cols + j] = x
    }
  }
  if (dtype.float) {
    for (let k = 0; k < data.length; k++) {
      if (!Number.isFinite(data[k])) requireFinite(data[k], Math.floor(k / cols) + 1, (k % cols) + 1, '.npy')
    }
  }
  return { rows, cols, data }
}

/** The header of a version 1.0 `<f8` C-order file of this shape, padded to 64 bytes as numpy does. */
export function npyHeader (rows: number, cols: number): Buffer {
  const dict = `{'descr': '<f8', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64
  const out = Buffer.alloc(total, 0x20)
  MAGIC.copy(out, 0)
  out[6] = 1
  out[7] = 0
  out.writeUInt16LE(total - 10, 8)
  out.write(dict, 10, 'latin1')
  out[total - 1] = 0x0a
  return out
}

/** The matrix as a .npy file: the header, then the canonical bytes in chunks of about 1 MB. */
export function * writeNpyMatrix (m: Matrix64): Generator<Buffer> {
  yield npyHeader(m.rows, m.cols)
  const bytes = canonicalBytes(m.data)
  const chunk = 1 << 20
  for (let p = 0; p < bytes.length; p += chunk) yield bytes.subarray(p, Math.min(bytes.length, p + chunk))
}
