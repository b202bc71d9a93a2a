/**
 * The HTTP side of user job types: GET /api/job-types, submissions validated by the type's own schema, broken
 * modules refused with their reason, and /docs showing every type's params. No job runs here.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { loadJobTypes } from '../../src/job-types/catalog.js'
import { ROOT, testConfig, tmpDb } from '../fixtures/helpers.js'

async function setup (t: Test) {
  const { jobs, matrices, db, path } = tmpDb(t)
  // Beside the database: a second t.testdir() would wipe the first.
  const dir = join(dirname(path), 'types')
  mkdirSync(dir)
  writeFileSync(join(dir, 'broken.mjs'), 'throw new Error("cannot reach the licence server")\n')
  writeFileSync(join(dir, 'checked.mjs'), `export default {
    name: 'checked', title: 'Checked', description: 'check() and prepare() refuse some params',
    params: { type: 'object', properties: { k: { type: 'integer' } }, required: ['k'], additionalProperties: false },
    prepare (p) { if (p.k === 13) throw new Error('unlucky'); return p },
    check (p, ctx) { return p.k % 2 === 1 ? 'k must be even' : ctx.matrix(1) === undefined ? undefined : 'matrix 1 exists' },
    steps: (p) => p.k === 0 ? 0 : p.k,
    create () { throw new Error('not here') }
  }\n`)
  writeFileSync(join(dir, 'twin.mjs'), 'export default { name: "counter", title: "T", description: "D", params: { type: "object" }, create () {} }\n')
  for (const f of ['counter.mjs']) copyFileSync(join(ROOT, 'test/fixtures/job-types', f), join(dir, f))
  copyFileSync(join(ROOT, 'examples/job-types/power-iteration.mjs'), join(dir, 'power-iteration.mjs'))
  const jobTypes = await loadJobTypes({ dir })
  const app = await buildApp({ config: testConfig(), store: jobs, matrices, scheduler: { wake () {} }, jobTypes })
  t.teardown(() => app.close())
  const rows = (): number => db.prepare('SELECT count(*) FROM jobs').pluck().get() as number
  return { app, rows }
}

t.test('GET /api/job-types lists built-ins, user types and broken modules with their error', async (t) => {
  const { app } = await setup(t)
  const res = await app.inject({ url: '/api/job-types' })
  t.equal(res.statusCode, 200, '200')
  const types = res.json().types as Array<Record<string, any>>
  t.same(types.map((x) => x.name), ['lyapunov', 'matmul', 'matpow', 'broken', 'checked', 'counter', 'power-iteration', 'twin'], 'built-ins first, then files in order')
  t.match(types[0], { builtIn: true, title: 'Lyapunov exponent', params: { properties: { n: { maximum: 2000 } } } }, 'lyapunov with its schema')
  t.notOk('error' in types[0], 'no error on a usable type')
  t.match(types[5], { builtIn: false, title: 'Counter', params: { properties: { mode: { enum: ['fast', 'slow'] } } } }, 'a user type with its schema')
  t.match(types[3], { builtIn: false, error: /cannot reach the licence server/ }, 'the broken module with its reason')
  t.match(types[7], { error: /the name "counter" is already taken by .*counter\.mjs/ }, 'the duplicate with its reason')
})

t.test('POST /api/jobs for a user type: params validated by its schema, defaults filled, steps from steps()', async (t) => {
  const { app } = await setup(t)
  const res = await app.inject({ method: 'POST', url: '/api/jobs', payload: { type: 'counter', params: { count: 40 }, name: 'mine' } })
  t.equal(res.statusCode, 201, '201')
  t.match(res.json(), { type: 'counter', name: 'mine', steps: 40, status: 'pending' }, 'the job')
  t.same(res.json().params, { count: 40, unitMs: 20, label: 'sum', mode: 'fast', verbose: false }, 'params as stored, with the schema defaults')
  const pi = await app.inject({ method: 'POST', url: '/api/jobs', payload: { type: 'power-iteration', params: { n: 20, iterations: 30 } } })
  t.match(pi.json(), { type: 'power-iteration', steps: 30 }, 'steps from the type')
  t.ok(Number.isInteger(pi.json().params.seed), 'the user type\'s prepare() drew a seed')
})

t.test('user-type submissions refused with 400 naming the field or the reason, and nothing stored', async (t) => {
  const { app, rows } = await setup(t)
  const cases: Array<[string, unknown, RegExp]> = [
    ['broken module', { type: 'broken', params: {} }, /body\/type "broken" cannot be used: cannot reach the licence server/],
    ['refused duplicate', { type: 'twin', params: {} }, /body\/type "twin" cannot be used: the name "counter" is already taken/],
    ['enum value', { type: 'counter', params: { count: 3, mode: 'medium' } }, /body\/params\/mode must be equal to one of the allowed values/],
    ['boolean as a string', { type: 'counter', params: { count: 3, verbose: 'true' } }, /body\/params\/verbose must be boolean/],
    ['integer as a string (no coercion)', { type: 'counter', params: { count: '3' } }, /body\/params\/count must be integer/],
    ['unknown param', { type: 'counter', params: { count: 3, speed: 1 } }, /body\/params must NOT have additional properties/],
    ['missing params', { type: 'counter' }, /body must have required property 'params'/],
    ['check() refuses', { type: 'checked', params: { k: 3 } }, /^body\/params k must be even$/],
    ['prepare() throws', { type: 'checked', params: { k: 13 } }, /job type "checked" refused these params: unlucky/],
    ['steps() not ≥ 1', { type: 'checked', params: { k: 0 } }, /job type "checked" counts 0 steps for these params/],
    ['flat fields with a user type', { type: 'counter', params: { count: 3 }, steps: 3 }, /must not mix the flat lyapunov fields \(steps\)/]
  ]
  for (const [what, payload, message] of cases) {
    const res = await app.inject({ method: 'POST', url: '/api/jobs', payload: payload as object })
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message }, `${what}: ${res.json().message}`)
  }
  t.equal(rows(), 0, 'no job was stored')
})

t.test('/docs/json shows the params of every usable type in the submit body', async (t) => {
  const { app } = await setup(t)
  const spec = (await app.inject({ url: '/docs/json' })).json()
  const body = spec.paths['/api/jobs'].post.requestBody.content['application/json'].schema
  const variants = body.oneOf as Array<Record<string, any>>
  t.same(variants.map((v) => v.title), ['lyapunov', 'matmul', 'matpow', 'checked', 'counter', 'power-iteration', 'lyapunov (flat)'], 'one variant per usable type, and the flat shorthand')
  t.match(variants[5].properties.params.properties, { n: { type: 'integer', maximum: 1000 }, iterations: { type: 'integer' } }, 'a user type\'s params schema')
  t.ok(spec.paths['/api/job-types'].get, 'GET /api/job-types is documented')
})
