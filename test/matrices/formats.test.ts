import t from 'tap'
import { FORMATS, MATRIX_FORMATS } from '../../src/matrices/formats/index.js'
import { parseNpyMatrix } from '../../src/matrices/formats/npy.js'
import { type Matrix64, matrixSha256, MatrixInputError, MatrixTooLargeError } from '../../src/matrices/matrix.js'
import { awkwardMatrix, collect, encode, intMatrix, npyFile } from '../fixtures/matrices.js'

const limits = { maxBytes: 64 * 1024 * 1024 }
const same = (a: Matrix64, b: Matrix64): boolean =>
  a.rows === b.rows && a.cols === b.cols && matrixSha256(a.data) === matrixSha256(b.data)

t.test('every format round-trips exactly: parse(write(m)) has the same bits, -0 and subnormals included', async (t) => {
  for (const [rows, cols] of [[1, 1], [1, 7], [7, 1], [13, 9], [40, 33]]) {
    const m = awkwardMatrix(rows, cols, rows * 31 + cols)
    for (const format of MATRIX_FORMATS) {
      const codec = FORMATS[format]
      const bytes = collect(codec.write(m, 'name\nwith a newline'))
      const back = codec.parse(bytes, limits)
      t.ok(same(m, back), `${format} ${rows}×${cols}: same shape and sha256`)
      const again = collect(codec.write(back, 'x'))
      t.ok(same(back, codec.parse(again, limits)), `${format} ${rows}×${cols}: and again`)
    }
  }
  const negZero = FORMATS.json.parse(collect(FORMATS.json.write({ rows: 1, cols: 1, data: new Float64Array([-0]) }, '')), limits)
  t.ok(Object.is(negZero.data[0], -0), '-0 keeps its sign')
})

t.test('the sha256 is of float64 little-endian row-major bytes', async (t) => {
  // [[1, 2], [3, 4]] as <f8, row-major, computed independently from the byte layout.
  const bytes = Buffer.alloc(32)
  ;[1, 2, 3, 4].forEach((x, i) => bytes.writeDoubleLE(x, i * 8))
  const { createHash } = await import('node:crypto')
  t.equal(matrixSha256(new Float64Array([1, 2, 3, 4])), createHash('sha256').update(bytes).digest('hex'), 'same digest')
})

t.test('JSON, CSV and Matrix Market read what other tools write', async (t) => {
  const expect = (m: Matrix64, rows: number, cols: number, data: number[], what: string): void => {
    t.same([m.rows, m.cols, Array.from(m.data)], [rows, cols, data], what)
  }
  expect(FORMATS.json.parse(Buffer.from(' [ [1, -2.5e3] ,\n [0.0, 3E-2] ] \n'), limits), 2, 2, [1, -2500, 0, 0.03], 'JSON with spaces and newlines')
  expect(FORMATS.json.parse(Buffer.from('\ufeff[[7]]'), limits), 1, 1, [7], 'JSON with a BOM')
  expect(FORMATS.csv.parse(Buffer.from('\ufeff"a","b"\r\n1,2\r\n 3 , 4.5 \r\n\r\n'), limits), 2, 2, [1, 2, 3, 4.5], 'CSV: BOM, quoted header, CRLF, spaces, trailing blank line')
  expect(FORMATS.csv.parse(Buffer.from('x,y\n+1,.5\n-1e2,2.\n'), limits), 2, 2, [1, 0.5, -100, 2], 'CSV: header, signs, bare fractions')
  expect(FORMATS.csv.parse(Buffer.from('1,2'), limits), 1, 2, [1, 2], 'CSV with no final newline')
  expect(FORMATS.mtx.parse(Buffer.from('%%MatrixMarket matrix coordinate real general\n% comment\n\n2 3 2\n1 1 1.5\n2 3 -2\n'), limits), 2, 3, [1.5, 0, 0, 0, 0, -2], 'mtx coordinate general')
  expect(FORMATS.mtx.parse(Buffer.from('%%MatrixMarket matrix coordinate integer symmetric\n3 3 3\n1 1 1\n3 1 5\n2 2 7\n'), limits), 3, 3, [1, 0, 5, 0, 7, 0, 5, 0, 0], 'mtx coordinate symmetric: mirrored')
  expect(FORMATS.mtx.parse(Buffer.from('%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n4\n'), limits), 2, 2, [1, 3, 2, 4], 'mtx array is column by column')
  expect(FORMATS.mtx.parse(Buffer.from('%%MatrixMarket matrix array real symmetric\n2 2\n1\n2\n3\n'), limits), 2, 2, [1, 2, 2, 3], 'mtx array symmetric: lower triangle by columns')
  expect(FORMATS.mtx.parse(Buffer.from('%%matrixmarket MATRIX Array Double General\r\n1 1\r\n4\r\n'), limits), 1, 1, [4], 'mtx: case-insensitive banner, CRLF, field double')
})

t.test('.npy: versions 1–3, every accepted dtype in both byte orders, C and Fortran order', async (t) => {
  const m = intMatrix(3, 5)
  for (const version of [1, 2, 3]) {
    for (const descr of ['<f8', '>f8', '<f4', '>f4', '<i8', '>i8', '<i4', '>i4']) {
      for (const fortran of [false, true]) {
        const file = npyFile({ version, descr, fortran, shape: [3, 5], data: encode(m, descr, fortran) })
        t.ok(same(parseNpyMatrix(file, limits), m), `v${version} ${descr} ${fortran ? 'F' : 'C'}`)
      }
    }
  }
  const f4 = npyFile({ descr: '<f4', shape: [1, 1], data: encode({ rows: 1, cols: 1, data: new Float64Array([0.1]) }, '<f4') })
  t.equal(parseNpyMatrix(f4, limits).data[0], Math.fround(0.1), 'float32 widens exactly')
  const unpadded = npyFile({ shape: [1, 2], pad: false, data: encode({ rows: 1, cols: 2, data: new Float64Array([1, 2]) }, '<f8') })
  t.same(Array.from(parseNpyMatrix(unpadded, limits).data), [1, 2], 'an unaligned header (older writers) is read too')
})

/** [format, what, body, status, message] */
type Bad = [keyof typeof FORMATS, string, Buffer | string, 400 | 413, RegExp]
const f8 = (n: number): Buffer => Buffer.alloc(n * 8)
const bad: Bad[] = [
  // JSON
  ['json', 'empty file', '', 400, /empty/],
  ['json', 'only spaces', '  \n', 400, /empty/],
  ['json', 'empty matrix', '[]', 400, /empty/],
  ['json', 'empty row', '[[1],[]]', 400, /row 2 is empty/],
  ['json', 'ragged rows (short)', '[[1,2],[3]]', 400, /ragged rows: row 2 has 1 numbers, row 1 has 2/],
  ['json', 'ragged rows (long)', '[[1,2],[3,4,5]]', 400, /ragged rows: row 2 has more than the 2/],
  ['json', 'a string', '[[1,"2"]]', 400, /row 1, column 2 \(line 1, column 5\): "\\"2\\"" is not a number/],
  ['json', 'null', '[[1],\n[null]]', 400, /row 2, column 1 \(line 2, column 2\): "null" is not a number/],
  ['json', 'NaN', '[[NaN]]', 400, /NaN and ±Infinity are not accepted/],
  ['json', '-Infinity', '[[1,-Infinity]]', 400, /column 2.*NaN and ±Infinity are not accepted/],
  ['json', 'overflowing literal', '[[1e999]]', 400, /overflows float64/],
  ['json', 'hex', '[[0x10]]', 400, /"0x10" is not a number/],
  ['json', 'leading zero', '[[01]]', 400, /"01" is not a number/],
  ['json', 'not rows', '[1,2]', 400, /row 1 is not an array/],
  ['json', 'an object', '{"a":1}', 400, /expected an array of rows/],
  ['json', 'unclosed', '[[1,2]', 400, /expected "," or "]" after row 1/],
  ['json', 'trailing text', '[[1]] x', 400, /unexpected "x" after the matrix/],
  ['json', 'missing value', '[[1,,2]]', 400, /empty field/],
  // CSV
  ['csv', 'empty file', '', 400, /empty/],
  ['csv', 'header only', 'a,b\n', 400, /no row of numbers/],
  ['csv', 'ragged rows', '1,2\n3\n', 400, /line 2: ragged rows: 1 fields where the first row has 2/],
  ['csv', 'a non-number', '1,2\n3,abc\n', 400, /line 2, column 2: "abc" is not a number/],
  ['csv', 'a non-number in a numeric first line', '1,x\n', 400, /line 1, column 2: "x" is not a number/],
  ['csv', 'NaN', '1,2\nnan,4\n', 400, /line 2, column 1: "nan": NaN and ±Infinity are not accepted/],
  ['csv', 'Infinity', '1,-inf\n', 400, /NaN and ±Infinity/],
  ['csv', 'empty field', '1,,3\n', 400, /line 1, column 2: empty field/],
  ['csv', 'semicolons', 'a;b\n1;2\n', 400, /line 2, column 1: "1;2" is not a number \(the separator is a comma\)/],
  ['csv', 'a lone line that is not numbers', '1;2\n', 400, /no row of numbers; line 1 was taken as a header/],
  ['csv', 'line too long', '1,'.repeat(300000) + '1\n', 400, /longer than/],
  // Matrix Market
  ['mtx', 'empty file', '', 400, /empty/],
  ['mtx', 'bad banner', '%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 1\n', 400, /line 1: bad banner/],
  ['mtx', 'no banner', '1 1\n1\n', 400, /bad banner/],
  ['mtx', 'vector object', '%%MatrixMarket vector coordinate real general\n', 400, /object "vector" is not supported/],
  ['mtx', 'complex', '%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n', 400, /field "complex" is not supported/],
  ['mtx', 'pattern', '%%MatrixMarket matrix coordinate pattern general\n1 1 1\n1 1\n', 400, /field "pattern" is not supported/],
  ['mtx', 'skew-symmetric', '%%MatrixMarket matrix coordinate real skew-symmetric\n', 400, /symmetry "skew-symmetric" is not supported/],
  ['mtx', 'bad size line', '%%MatrixMarket matrix coordinate real general\n2 2\n', 400, /line 2: bad size line "2 2"; expected "rows cols entries"/],
  ['mtx', 'size line not numbers', '%%MatrixMarket matrix array real general\n2 x\n', 400, /bad size line/],
  ['mtx', 'no size line', '%%MatrixMarket matrix array real general\n% c\n', 400, /no size line/],
  ['mtx', 'out of range', '%%MatrixMarket matrix coordinate real general\n2 2 1\n3 1 1\n', 400, /line 3: entry \(3, 1\) is outside the 2×2 matrix/],
  ['mtx', 'zero index', '%%MatrixMarket matrix coordinate real general\n2 2 1\n0 1 1\n', 400, /entry \(0, 1\) is outside/],
  ['mtx', 'duplicate', '%%MatrixMarket matrix coordinate real general\n2 2 2\n1 2 1\n1 2 5\n', 400, /line 4: duplicate entry \(1, 2\)/],
  ['mtx', 'duplicate across the diagonal (symmetric)', '%%MatrixMarket matrix coordinate real symmetric\n2 2 2\n2 1 1\n1 2 5\n', 400, /duplicate entry \(1, 2\)/],
  ['mtx', 'fewer entries than declared', '%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1.000000000000\n', 400, /2 entries declared, the file has 1/],
  ['mtx', 'more entries than declared', '%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 1\n2 2 2\n', 400, /more entries than the 1 declared/],
  ['mtx', 'more entries than the matrix holds', '%%MatrixMarket matrix coordinate real general\n2 2 5\n', 400, /5 entries declared, more than a 2×2 matrix holds/],
  ['mtx', 'array too short', '%%MatrixMarket matrix array real general\n2 2\n1.0\n2.0\n3.0\n', 400, /4 values expected.*has 3/],
  ['mtx', 'array too long', '%%MatrixMarket matrix array real general\n1 1\n1\n2\n', 400, /more than the 1 values/],
  ['mtx', 'integer field with a fraction', '%%MatrixMarket matrix coordinate integer general\n1 1 1\n1 1 1.5\n', 400, /line 3.*"1.5" is not a number/],
  ['mtx', 'NaN value', '%%MatrixMarket matrix array real general\n1 1\nNaN\n', 400, /NaN and ±Infinity/],
  ['mtx', 'symmetric, not square', '%%MatrixMarket matrix array real symmetric\n2 3\n', 400, /must be square/],
  ['mtx', 'zero rows', '%%MatrixMarket matrix array real general\n0 3\n', 400, /empty/],
  ['mtx', 'declared far beyond the data', '%%MatrixMarket matrix coordinate real general\n2000 2000 3000000\n1 1 1\n', 400, /3000000 entries declared, but only \d+ bytes follow/],
  ['mtx', 'beyond 8192 rows', '%%MatrixMarket matrix array real general\n8193 1\n', 413, /beyond the largest matrix accepted/],
  ['mtx', 'beyond MAX_MATRIX_BYTES', '%%MatrixMarket matrix array real general\n8192 8192\n', 413, /beyond MAX_MATRIX_BYTES/],
  // .npy
  ['npy', 'empty file', '', 400, /empty/],
  ['npy', 'bad magic', Buffer.from('PK\x03\x04 this is a zip file'), 400, /bad magic/],
  ['npy', 'unsupported version', npyFile({ version: 4 }), 400, /unsupported format version 4.0/],
  ['npy', 'object dtype', npyFile({ descr: '|O', data: f8(4) }), 400, /object array; refused \(pickled data is never loaded\)/],
  ['npy', 'complex dtype', npyFile({ descr: '<c16', data: f8(8) }), 400, /dtype '<c16' is not supported/],
  ['npy', 'unsigned dtype', npyFile({ descr: '<u4', data: f8(2) }), 400, /dtype '<u4' is not supported/],
  ['npy', 'structured dtype', npyFile({ header: "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2,), }" }), 400, /structured dtypes are not supported/],
  ['npy', 'a header that is code', npyFile({ header: "__import__('os').system('true')" }), 400, /\.npy header: expected "\{"/],
  ['npy', '1-D', npyFile({ shape: [4], data: f8(4) }), 400, /shape \(4,\) is not 2-D/],
  ['npy', '3-D', npyFile({ shape: [2, 2, 2], data: f8(8) }), 400, /shape \(2, 2, 2\) is not 2-D/],
  ['npy', '0-D', npyFile({ shape: '()', data: f8(1) }), 400, /shape \(\) is not 2-D/],
  ['npy', 'zero rows', npyFile({ shape: [0, 3] }), 400, /empty/],
  ['npy', 'truncated data', npyFile({ shape: [2, 2], data: f8(3) }), 400, /truncated data: shape \(2, 2\) of <f8 needs 32 bytes, the file has 24/],
  ['npy', 'trailing bytes', npyFile({ shape: [1, 1], data: f8(2) }), 400, /8 bytes after the data/],
  ['npy', 'truncated header', npyFile({ shape: [1, 1] }).subarray(0, 30), 400, /truncated header/],
  ['npy', 'NaN', npyFile({ shape: [1, 2], data: Buffer.from(new Float64Array([1, NaN]).buffer) }), 400, /entry \(1, 2\) is NaN/],
  ['npy', 'Infinity in float32', npyFile({ descr: '<f4', shape: [1, 1], data: Buffer.from(new Float32Array([Infinity]).buffer) }), 400, /entry \(1, 1\) is Infinity/],
  ['npy', 'unknown header key', npyFile({ header: "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), 'x': 1, }" }), 400, /unexpected value|unexpected key/],
  ['npy', 'declared 10^9 × 10^9 in 40-odd bytes', npyFile({ shape: [1e9, 1e9], pad: false }), 413, /beyond the largest matrix accepted/],
  ['npy', 'declared 10^30 × 2', npyFile({ shape: '(1000000000000000000000000000000, 2)', pad: false }), 413, /beyond the largest matrix/],
  ['npy', 'declared 8192 × 8192, no data', npyFile({ shape: [8192, 8192] }), 413, /beyond MAX_MATRIX_BYTES/],
  ['npy', 'declared 2000 × 2000, 8 bytes of data', npyFile({ shape: [2000, 2000], data: f8(1) }), 400, /truncated data/]
]

t.test('bad input: a clear message naming what and where, 400 or 413', async (t) => {
  for (const [format, what, body, status, message] of bad) {
    const buf = typeof body === 'string' ? Buffer.from(body) : body
    try {
      FORMATS[format].parse(buf, limits)
      t.fail(`${format} ${what}: accepted`)
    } catch (err) {
      const ok = status === 400 ? err instanceof MatrixInputError : err instanceof MatrixTooLargeError
      t.ok(ok, `${format} ${what}: ${status} (${(err as Error).name})`)
      t.match((err as Error).message, message, `${format} ${what}: ${(err as Error).message}`)
    }
  }
})

t.test('text formats refuse numbers past MAX_MATRIX_BYTES as they reach them', async (t) => {
  const small = { maxBytes: 8 * 6 }
  t.throws(() => FORMATS.csv.parse(Buffer.from('1,2,3\n4,5,6\n7,8,9\n'), small), MatrixTooLargeError, 'CSV: 9 numbers > 6')
  t.throws(() => FORMATS.json.parse(Buffer.from('[[1,2,3],[4,5,6],[7,8,9]]'), small), MatrixTooLargeError, 'JSON: 9 numbers > 6')
  t.ok(same(FORMATS.csv.parse(Buffer.from('1,2,3\n4,5,6\n'), small), { rows: 2, cols: 3, data: new Float64Array([1, 2, 3, 4, 5, 6]) }), 'exactly at the limit is accepted')
  t.throws(() => FORMATS.csv.parse(Buffer.from('1\n'.repeat(8193)), limits), MatrixTooLargeError, 'CSV: 8193 rows')
  t.throws(() => FORMATS.json.parse(Buffer.from(`[[${'1,'.repeat(8192)}1]]`), limits), MatrixTooLargeError, 'JSON: 8193 columns')
})

t.test('a huge declared .npy shape is refused without allocating for it', async (t) => {
  const file = npyFile({ shape: [1e9, 1e9], pad: false })
  t.ok(file.length < 100, `${file.length}-byte file`)
  const before = process.memoryUsage().arrayBuffers
  const start = performance.now()
  t.throws(() => parseNpyMatrix(file, limits), MatrixTooLargeError)
  t.ok(performance.now() - start < 50, 'refused at once')
  t.ok(process.memoryUsage().arrayBuffers - before < 1 << 20, 'no large buffer was allocated')
})

t.test('parsing time grows with the size of the file, not its square', async (t) => {
  // One line of JSON: a position computed for every number (not only for a message) would rescan the file each time.
  const m = awkwardMatrix(250, 250, 4)
  for (const format of MATRIX_FORMATS) {
    const body = collect(FORMATS[format].write(m, ''))
    const start = performance.now()
    FORMATS[format].parse(format === 'json' ? Buffer.from(body.toString().replace(/\n/g, '')) : body, limits)
    const ms = performance.now() - start
    t.ok(ms < 5000, `${format}: ${body.length} bytes parsed in ${Math.round(ms)} ms`)
  }
})
