import type { Test } from 'tap'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { FORMATS, MATRIX_FORMATS } from '../../src/matrices/formats/index.js'
import { matrixSha256 } from '../../src/matrices/matrix.js'
import { createMatrixStore } from '../../src/matrices/store.js'
import { testConfig, tmpDb } from '../fixtures/helpers.js'
import { awkwardMatrix, collect, npyFile } from '../fixtures/matrices.js'

const TYPES = { json: 'application/json', csv: 'text/csv', mtx: 'application/x-matrix-market', npy: 'application/octet-stream' }

async function setup (t: Test, env: Record<string, string> = {}) {
  const { store, jobs, matrices: asyncMatrices, db } = tmpDb(t)
  // The app takes the async stores; the test's own setup and checks use the synchronous matrix store.
  const matrices = createMatrixStore(db)
  const app = await buildApp({ config: testConfig(env), store: jobs, matrices: asyncMatrices, scheduler: { wake () {} } })
  t.teardown(() => app.close())
  const count = (): number => db.prepare('SELECT count(*) FROM matrices').pluck().get() as number
  const upload = (body: string | Buffer, query = '', contentType = 'application/json') =>
    app.inject({ method: 'POST', url: `/api/matrices${query}`, headers: { 'content-type': contentType }, payload: body })
  return { app, db, store, matrices, count, upload }
}

t.test('upload in every format: 201, Location, metadata with the canonical sha256; download round-trips', async (t) => {
  const { app, upload } = await setup(t)
  const m = awkwardMatrix(9, 40, 3)
  const sha = matrixSha256(m.data)
  for (const format of MATRIX_FORMATS) {
    const res = await upload(collect(FORMATS[format].write(m, 'x')), `?name=${format}-upload`, TYPES[format])
    t.equal(res.statusCode, 201, `${format}: 201`)
    const meta = res.json()
    t.equal(res.headers.location, `/api/matrices/${meta.id}`, `${format}: Location`)
    t.match(meta, { name: `${format}-upload`, rows: 9, cols: 40, bytes: 9 * 40 * 8, sha256: sha, jobId: null }, `${format}: metadata`)
    for (const out of MATRIX_FORMATS) {
      const down = await app.inject({ url: `/api/matrices/${meta.id}/data?format=${out}` })
      t.equal(down.statusCode, 200, `${format} → ${out}: 200`)
      t.match(down.headers['content-disposition'], new RegExp(`^attachment; filename="${format}-upload\\.${out}"$`), `${format} → ${out}: Content-Disposition`)
      const again = await upload(down.rawPayload, `?format=${out}`, 'application/x-www-form-urlencoded')
      t.equal(again.json().sha256, sha, `${format} → ${out} → upload: same sha256`)
    }
  }
})

t.test('format from ?format= over Content-Type; 415 when neither says', async (t) => {
  const { upload, count } = await setup(t)
  const csv = await upload('1,2\n3,4\n', '?format=csv', 'application/octet-stream')
  t.equal(csv.statusCode, 201, '?format=csv wins over octet-stream')
  const none = await upload('1,2\n', '', 'application/x-www-form-urlencoded')
  t.equal(none.statusCode, 415, 'curl --data-binary default type: 415')
  t.match(none.json(), { statusCode: 415, error: 'Unsupported Media Type', message: /add \?format=json\|csv\|mtx\|npy/ }, 'says what to do')
  const badFormat = await upload('1', '?format=xlsx', 'text/csv')
  t.equal(badFormat.statusCode, 400, 'unknown ?format=: 400')
  t.equal(count(), 1, 'only the good upload stored')
})

t.test('bad files: 400 naming what and where, nothing stored', async (t) => {
  const { upload, count } = await setup(t)
  const cases: Array<[string, string | Buffer, string, RegExp]> = [
    ['empty', '', 'text/csv', /empty/],
    ['ragged', '1,2\n3\n', 'text/csv', /line 2: ragged rows/],
    ['non-number', '1,2\n3,x\n', 'text/csv', /line 2, column 2: "x" is not a number/],
    ['NaN', '[[NaN]]', 'application/json', /NaN and ±Infinity/],
    ['mtx pattern', '%%MatrixMarket matrix coordinate pattern general\n1 1 1\n1 1\n', 'application/x-matrix-market', /"pattern" is not supported/],
    ['npy object', npyFile({ descr: '|O', data: Buffer.alloc(32) }), 'application/octet-stream', /object array; refused/],
    ['npy truncated', npyFile({ shape: [4, 4], data: Buffer.alloc(8) }), 'application/octet-stream', /truncated data/]
  ]
  for (const [what, body, type, message] of cases) {
    const res = await upload(body, '', type)
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message }, `${what}: ${res.json().message}`)
  }
  t.equal(count(), 0, 'nothing stored')
})

t.test('limits: 413 beyond MAX_MATRIX_BYTES or 8192, before reading a body that cannot fit', async (t) => {
  const { upload, count } = await setup(t, { MAX_MATRIX_BYTES: String(8 * 100) })
  const tooMany = await upload('1,'.repeat(100) + '1\n', '', 'text/csv')
  t.equal(tooMany.statusCode, 413, '101 numbers > 100: 413')
  t.match(tooMany.json(), { statusCode: 413, message: /MAX_MATRIX_BYTES/ }, 'names the limit')
  const declared = await upload(npyFile({ shape: [1e9, 1e9], pad: false }), '', 'application/octet-stream')
  t.equal(declared.statusCode, 413, 'a tiny .npy declaring 10^9×10^9: 413')
  const body = await upload(Buffer.alloc(8 * 100 * 4 + 65537, 0x31), '', 'text/csv')
  t.equal(body.statusCode, 413, 'a body beyond what any accepted matrix could take: 413 from the body limit')
  const ok = await upload('1,'.repeat(99) + '1\n', '', 'text/csv')
  t.equal(ok.statusCode, 201, 'exactly 100 numbers: accepted')
  t.equal(count(), 1, 'only that one stored')
})

t.test('list pages newest first; metadata; preview; 404s', async (t) => {
  const { app, upload } = await setup(t)
  const ids: number[] = []
  for (let i = 0; i < 5; i++) ids.push((await upload(`[[${i}, 1], [2, 3]]`, `?name=m${i}`)).json().id)
  const first = await app.inject({ url: '/api/matrices?limit=2' })
  t.same(first.json().matrices.map((m: { id: number }) => m.id), [ids[4], ids[3]], 'newest first')
  t.equal(first.json().nextCursor, ids[3], 'cursor')
  const second = await app.inject({ url: `/api/matrices?limit=2&cursor=${ids[3]}` })
  t.same(second.json().matrices.map((m: { id: number }) => m.id), [ids[2], ids[1]], 'second page')
  const meta = await app.inject({ url: `/api/matrices/${ids[0]}` })
  t.match(meta.json(), { id: ids[0], name: 'm0', rows: 2, cols: 2 }, 'metadata')
  const big = await upload(JSON.stringify(Array.from({ length: 12 }, (_, i) => Array.from({ length: 10 }, (_, j) => i * 10 + j))))
  const preview = await app.inject({ url: `/api/matrices/${big.json().id}/preview` })
  t.same(preview.json(), { id: big.json().id, rows: 12, cols: 10, data: Array.from({ length: 8 }, (_, i) => Array.from({ length: 8 }, (_, j) => i * 10 + j)) }, 'top-left 8×8')
  const small = await app.inject({ url: `/api/matrices/${big.json().id}/preview?rows=2&cols=3` })
  t.same(small.json().data, [[0, 1, 2], [10, 11, 12]], 'rows and cols')
  for (const url of ['/api/matrices/999', '/api/matrices/999/data', '/api/matrices/999/preview']) {
    t.equal((await app.inject({ url })).statusCode, 404, `${url}: 404`)
  }
  t.equal((await app.inject({ method: 'DELETE', url: '/api/matrices/999' })).statusCode, 404, 'DELETE unknown: 404')
})

t.test('DELETE: 204, 409 while a pending or running job uses the matrix; ids are never reused', async (t) => {
  const { app, db, upload } = await setup(t)
  const a = (await upload('[[1]]')).json().id
  const b = (await upload('[[2]]')).json().id
  const job = (type: string, params: unknown, status: string): number => Number(db.prepare(`INSERT INTO jobs (type, params, steps, status, created_at, updated_at)
    VALUES (?, ?, 1, ?, 0, 0)`).run(type, JSON.stringify(params), status).lastInsertRowid)
  const j1 = job('matmul', { matrices: [b, a] }, 'pending')
  const j2 = job('matpow', { matrix: b, exponent: 3 }, 'running')
  job('matmul', { matrices: [a, a] }, 'done')
  const conflict = await app.inject({ method: 'DELETE', url: `/api/matrices/${a}` })
  t.equal(conflict.statusCode, 409, 'used by a pending matmul: 409')
  t.match(conflict.json(), { statusCode: 409, error: 'Conflict', message: `matrix ${a} is used by job ${j1} (pending); cancel or wait for it first` }, 'names the job')
  db.prepare("UPDATE jobs SET status = 'canceled' WHERE id = ?").run(j1)
  t.equal((await app.inject({ method: 'DELETE', url: `/api/matrices/${a}` })).statusCode, 204, 'once that job ended: 204 (done jobs do not hold it)')
  const running = await app.inject({ method: 'DELETE', url: `/api/matrices/${b}` })
  t.match(running.json(), { statusCode: 409, message: new RegExp(`job ${j2} \\(running\\)`) }, 'used by a running matpow: 409')
  db.prepare("UPDATE jobs SET status = 'failed' WHERE id = ?").run(j2)
  t.equal((await app.inject({ method: 'DELETE', url: `/api/matrices/${b}` })).statusCode, 204, 'then 204')
  const c = (await upload('[[3]]')).json().id
  t.ok(c > b, `a new matrix gets a new id (${c}), not a deleted one's`)
})

t.test('a job\'s result matrix goes with its job', async (t) => {
  const { app, db, matrices } = await setup(t)
  const jobId = Number(db.prepare("INSERT INTO jobs (type, params, steps, status, created_at, updated_at) VALUES ('matmul', '{}', 1, 'done', 0, 0)").run().lastInsertRowid)
  const id = matrices.insertOwned(jobId, { name: 'r', rows: 1, cols: 1, data: new Float64Array([5]) })
  t.equal((await app.inject({ url: `/api/matrices/${id}` })).json().jobId, jobId, 'jobId shown')
  t.equal((await app.inject({ method: 'DELETE', url: `/api/jobs/${jobId}` })).statusCode, 204, 'job deleted')
  t.equal((await app.inject({ url: `/api/matrices/${id}` })).statusCode, 404, 'its matrix is gone')
})

t.test('downloads stream in chunks, and the listing never reads a blob', async (t) => {
  const { app, upload, db } = await setup(t)
  const m = awkwardMatrix(300, 300, 9)
  const id = (await upload(collect(FORMATS.npy.write(m, '')), '', 'application/octet-stream')).json().id
  const chunks: number[] = []
  const res = await app.inject({ url: `/api/matrices/${id}/data?format=csv`, payloadAsStream: true })
  for await (const chunk of res.stream() as AsyncIterable<Buffer>) chunks.push(chunk.length)
  t.ok(chunks.length > 1, `${chunks.length} chunks, the largest ${Math.max(...chunks)} bytes`)
  // A row's columns are stored in order; with the blob last, reading the others never walks its overflow pages.
  const columns = (db.prepare('PRAGMA table_info(matrices)').all() as Array<{ name: string }>).map((c) => c.name)
  t.equal(columns.at(-1), 'data', 'data is the last column of matrices')
})

t.test('the raw-body parser is scoped to uploads: the rest of the API still answers 415 to non-JSON', async (t) => {
  const { app } = await setup(t)
  const res = await app.inject({ method: 'POST', url: '/api/jobs', headers: { 'content-type': 'text/csv' }, payload: '1,2' })
  t.equal(res.statusCode, 415, 'POST /api/jobs with text/csv: 415')
})

t.test('uploads and deletes need the API token when the server has one', async (t) => {
  const { app, upload, count } = await setup(t, { API_TOKEN: 'secret' })
  t.equal((await upload('[[1]]')).statusCode, 401, 'upload without the token: 401')
  t.equal(count(), 0, 'nothing stored')
  const ok = await app.inject({ method: 'POST', url: '/api/matrices', headers: { 'content-type': 'application/json', authorization: 'Bearer secret' }, payload: '[[1]]' })
  t.equal(ok.statusCode, 201, 'with the token: 201')
  t.equal((await app.inject({ method: 'DELETE', url: `/api/matrices/${ok.json().id}` })).statusCode, 401, 'delete without the token: 401')
  t.equal((await app.inject({ url: `/api/matrices/${ok.json().id}/data?format=csv` })).statusCode, 200, 'downloads stay open, like every read')
})

t.test('bounded storage: a tiny sparse file declaring a big matrix fills no disk past MAX_MATRIX_STORAGE_BYTES', async (t) => {
  // Room for two 100×100 matrices (80 000 bytes each), not three.
  const { upload, count } = await setup(t, { MAX_MATRIX_STORAGE_BYTES: String(2 * 80_000 + 100) })
  const sparse = '%%MatrixMarket matrix coordinate real general\n100 100 0\n'
  for (const n of [1, 2]) t.equal((await upload(sparse, '?format=mtx', 'text/plain')).statusCode, 201, `upload ${n} stored`)
  const third = await upload(sparse, '?format=mtx', 'text/plain')
  t.equal(third.statusCode, 413, 'the third is refused')
  t.match(third.json().message, /matrix storage is full: 160000 of 160100 bytes used \(MAX_MATRIX_STORAGE_BYTES\)/, 'saying why and what to do')
  t.equal(count(), 2, 'nothing stored')
})

t.test('a matmul whose product would exceed MAX_MATRIX_BYTES is refused at submit, naming the partial product', async (t) => {
  const { app, upload } = await setup(t, { MAX_MATRIX_BYTES: String(64 * 1024) })
  // 8192×1 and 1×8192: each 64 KiB, their product 512 MiB.
  const column = (await upload(`[${Array.from({ length: 8192 }, () => '[1]').join(',')}]`)).json().id
  const row = (await upload(`[[${Array.from({ length: 8192 }, () => '1').join(',')}]]`)).json().id
  const res = await app.inject({ method: 'POST', url: '/api/jobs', payload: { type: 'matmul', params: { matrices: [column, row] } } })
  t.equal(res.statusCode, 400, '400')
  t.match(res.json().message, /the product of matrices\[0\.\.1\] would be 8192×8192 \(536870912 bytes\), beyond the largest matrix stored \(MAX_MATRIX_BYTES = 65536\)/, 'naming the product and the limit')
  const ok = await app.inject({ method: 'POST', url: '/api/jobs', payload: { type: 'matmul', params: { matrices: [row, column] } } })
  t.equal(ok.statusCode, 201, 'the other order (1×1) is fine')
})

t.test('a preview comes from the stored 32×32 corner, exact, however wide the matrix', async (t) => {
  const { app, upload } = await setup(t)
  const m = awkwardMatrix(45, 70, 5)
  const id = (await upload(collect(FORMATS.npy.write(m, 'x')), '?format=npy')).json().id
  const preview = (await app.inject({ url: `/api/matrices/${id}/preview?rows=32&cols=32` })).json()
  const expected = Array.from({ length: 32 }, (_, i) => Array.from(m.data.subarray(i * 70, i * 70 + 32)))
  t.ok(preview.data.length === 32 && preview.data.every((row: number[], i: number) => row.every((x, j) => x === expected[i][j])), 'every number of the corner (JSON writes -0 as 0)')
  const beyond = await app.inject({ url: `/api/matrices/${id}/preview?rows=33&cols=8` })
  t.equal(beyond.statusCode, 400, 'more than 32 rows is refused')
})
