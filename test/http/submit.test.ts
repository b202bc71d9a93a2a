import type { Test } from 'tap'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { checkSubmission, matrixIdsIn } from '../../src/http/submit.js'
import type { AsyncMatrixStore } from '../../src/store/matrix-store.js'
import { testConfig, tmpDb } from '../fixtures/helpers.js'

/** The app over a real database with its async stores; `shape` may be wrapped to watch or break the reads. */
async function setup (t: Test, wrap: (m: AsyncMatrixStore) => AsyncMatrixStore = (m) => m, env: Record<string, string> = {}) {
  const { jobs, matrices, db } = tmpDb(t)
  const app = await buildApp({ config: testConfig(env), store: jobs, matrices: wrap(matrices), scheduler: { wake () {} } })
  t.teardown(() => app.close())
  const upload = async (body: string): Promise<number> =>
    (await app.inject({ method: 'POST', url: '/api/matrices', headers: { 'content-type': 'application/json' }, payload: body })).json().id
  const rows = (): number => db.prepare('SELECT count(*) FROM jobs').pluck().get() as number
  return { app, upload, rows }
}

t.test('matmul and matpow submits are checked against the shapes read from the async matrix store', async (t) => {
  const shapeReads: number[] = []
  const { app, upload, rows } = await setup(t, (m) => ({ ...m, shape: (id) => { shapeReads.push(id); return m.shape(id) } }))
  const a = await upload('[[1,2,3],[4,5,6]]')
  const b = await upload('[[1],[2],[3]]')
  const square = await upload('[[1,2],[3,4]]')
  const submit = (body: unknown) => app.inject({ method: 'POST', url: '/api/jobs', payload: body })

  const cases: Array<[string, unknown, RegExp]> = [
    ['an unknown matrix', { type: 'matmul', params: { matrices: [a, 999] } }, /^body\/params matrices\[1\]: matrix 999 not found$/],
    ['shapes that do not fit', { type: 'matmul', params: { matrices: [a, a] } }, /^body\/params matrices\[0\] \(matrix \d+, 2×3\) and matrices\[1\] \(matrix \d+, 2×3\) do not fit: 3 columns against 2 rows$/],
    ['a power of a matrix that is not square', { type: 'matpow', params: { matrix: a, exponent: 2 } }, /^body\/params matrix \d+ is 2×3; a power needs a square matrix$/],
    ['a power of an unknown matrix', { type: 'matpow', params: { matrix: 12345, exponent: 2 } }, /^body\/params matrix 12345 not found$/]
  ]
  for (const [what, body, message] of cases) {
    const res = await submit(body)
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message }, `${what}: the type's own words`)
  }
  t.equal(rows(), 0, 'nothing refused was stored')

  const c = await upload('[[7]]')
  shapeReads.length = 0
  const product = await submit({ type: 'matmul', params: { matrices: [a, b, c] } })
  t.equal(product.statusCode, 201, 'a chain that fits: 201')
  t.equal(new Set(shapeReads).size, 3, 'each matrix named was read once, before the check ran')
  t.equal((await submit({ type: 'matpow', params: { matrix: square, exponent: 5 } })).statusCode, 201, 'a power of a square matrix: 201')
  t.equal(rows(), 2, 'both stored')
})

t.test('a check that asks for a matrix its schema does not mark is run again once that shape is read', async (t) => {
  const { matrices } = tmpDb(t)
  const type = {
    params: { type: 'object', properties: { k: { type: 'integer' } } },
    check: (p: { k: number }, ctx: { matrix: (id: number) => { rows: number, cols: number } | undefined }) =>
      ctx.matrix(p.k) === undefined ? `matrix ${p.k} not found` : undefined
  }
  t.equal(await checkSubmission(type, { k: 1 }, matrices), 'matrix 1 not found', 'no matrix 1 yet')
  await matrices.insert({ name: 'm', rows: 1, cols: 1, data: new Float64Array([1]) })
  t.equal(await checkSubmission(type, { k: 1 }, matrices), undefined, 'matrix 1 read on the second round: accepted')
  t.equal(await checkSubmission(type, { k: 1 }, undefined), 'matrix 1 not found', 'without a matrix store nothing is found')
  t.equal(await checkSubmission({ params: {} }, { k: 1 }, matrices), undefined, 'a type without check() accepts')
})

t.test('a failing matrix store is a 500, not a refusal of the params', async (t) => {
  const { app } = await setup(t, (m) => ({ ...m, shape: async () => { throw Object.assign(new Error('connection lost'), { code: 'ECONNRESET' }) } }))
  const res = await app.inject({ method: 'POST', url: '/api/jobs', payload: { type: 'matpow', params: { matrix: 1, exponent: 2 } } })
  t.equal(res.statusCode, 500, '500')
  t.same(res.json(), { statusCode: 500, error: 'Internal Server Error', message: 'internal error; see the server log' }, 'the store\'s message is not shown')
})

t.test('matrixIdsIn finds the ids a schema marks, at any depth, and nothing else', async (t) => {
  const schema = {
    type: 'object',
    properties: {
      one: { type: 'integer', 'x-matrix-id': true },
      many: { type: 'array', items: { type: 'integer', 'x-matrix-id': true } },
      nested: { type: 'object', properties: { deep: { type: 'integer', 'x-matrix-id': true } } },
      plain: { type: 'integer' },
      either: { oneOf: [{ type: 'integer', 'x-matrix-id': true }, { type: 'string' }] }
    }
  }
  const ids = matrixIdsIn(schema, { one: 1, many: [2, 3, 2], nested: { deep: 4 }, plain: 5, either: 6, extra: 7 })
  t.same([...ids].sort((x, y) => x - y), [1, 2, 3, 4, 6], 'marked properties, array items, nested and combined schemas')
  t.same([...matrixIdsIn(schema, { one: 'x', many: 'not an array', nested: null })], [], 'values of the wrong kind are skipped')
  t.same([...matrixIdsIn(null, { one: 1 })], [], 'no schema, no ids')
})
