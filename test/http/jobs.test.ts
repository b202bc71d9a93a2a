import type { Test } from 'tap'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { testConfig, tmpDb } from '../fixtures/helpers.js'

/** The API over a real database file, with a scheduler that only counts wake-ups (no job runs here). */
async function setup (t: Test, env: Record<string, string> = {}) {
  const { store, jobs, db } = tmpDb(t)
  const wakes = { count: 0 }
  const app = await buildApp({ config: testConfig(env), store: jobs, scheduler: { wake: () => { wakes.count++ } } })
  t.teardown(() => app.close())
  const rows = (): number => db.prepare('SELECT count(*) FROM jobs').pluck().get() as number
  return { app, store, rows, wakes }
}

t.test('POST /api/jobs creates a pending job', async (t) => {
  const { app, wakes } = await setup(t)
  const res = await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 400, steps: 20, name: 'first', priority: 2 } })
  t.equal(res.statusCode, 201, '201 Created')
  const job = res.json()
  t.equal(res.headers.location, `/api/jobs/${job.id}`, 'Location header')
  t.match(job, { id: 1, name: 'first', status: 'pending', progress: 0, step: 0, steps: 20, priority: 2, result: null, error: null, attempts: 0, pid: null }, 'job fields')
  t.match(job.params, { n: 400, steps: 20 }, 'params')
  t.ok(Number.isInteger(job.params.seed) && job.params.seed >= 0 && job.params.seed < 2 ** 32, 'a random uint32 seed was chosen and stored')
  t.match(job.createdAt, /^\d{4}-\d\d-\d\dT/, 'ISO date')
  t.equal(wakes.count, 1, 'the scheduler was told')
  const read = await app.inject({ url: `/api/jobs/${job.id}` })
  t.same(read.json(), job, 'GET returns the same job')
})

t.test('bad input gets 400 naming the field, and changes nothing', async (t) => {
  const { app, rows } = await setup(t)
  const cases: Array<[string, unknown, RegExp]> = [
    ['missing n', { steps: 5 }, /must have required property 'n'/],
    ['n as a string', { n: '400', steps: 5 }, /n must be integer/],
    ['n fractional', { n: 4.5, steps: 5 }, /n must be integer/],
    ['n zero', { n: 0, steps: 5 }, /n must be >= 1/],
    ['n too large', { n: 2001, steps: 5 }, /n must be <= 2000/],
    ['steps too large', { n: 4, steps: 10001 }, /steps must be <= 10000/],
    ['steps negative', { n: 4, steps: -1 }, /steps must be >= 1/],
    ['seed negative', { n: 4, steps: 1, seed: -1 }, /seed must be >= 0/],
    ['seed beyond uint32', { n: 4, steps: 1, seed: 2 ** 32 }, /seed must be <= 4294967295/],
    ['name too long', { n: 4, steps: 1, name: 'x'.repeat(201) }, /name must NOT have more than 200 characters/],
    ['name not a string', { n: 4, steps: 1, name: 5 }, /name must be string/],
    ['priority fractional', { n: 4, steps: 1, priority: 0.5 }, /priority must be integer/],
    ['unknown field', { n: 4, steps: 1, colour: 'red' }, /must NOT have additional properties/],
    ['unknown type', { n: 4, steps: 1, type: 'sorting' }, /body\/type must be one of the job types of this server \(lyapunov, matmul, matpow\), got "sorting"/],
    ['typed: params not an object', { type: 'lyapunov', params: [4, 1] }, /body\/params must be object/],
    ['typed: params without type', { params: { n: 4, steps: 1 } }, /body must have required property 'type' along with params/],
    ['typed: n as a string', { type: 'lyapunov', params: { n: '4', steps: 1 } }, /body\/params\/n must be integer/],
    ['typed: missing steps', { type: 'lyapunov', params: { n: 4 } }, /body\/params must have required property 'steps'/],
    ['typed: n too large', { type: 'lyapunov', params: { n: 2001, steps: 1 } }, /body\/params\/n must be <= 2000/],
    ['typed: unknown param', { type: 'lyapunov', params: { n: 4, steps: 1, colour: 'red' } }, /body\/params must NOT have additional properties/],
    ['typed: unknown top-level field', { type: 'lyapunov', params: { n: 4, steps: 1 }, colour: 'red' }, /body must NOT have additional properties/],
    ['typed: unknown type', { type: 'sorting', params: {} }, /body\/type must be one of the job types of this server \(lyapunov, matmul, matpow\), got "sorting"/],
    ['typed: type not a name', { type: 'Sorting!', params: {} }, /body\/type must match pattern/],
    ['typed: priority a string', { type: 'lyapunov', params: { n: 4, steps: 1 }, priority: '2' }, /body\/priority must be integer/],
    ['mixed forms', { type: 'lyapunov', params: { n: 4, steps: 1 }, n: 4 }, /must not mix the flat lyapunov fields \(n\) with params/],
    ['flat form of another type', { type: 'counter', n: 4, steps: 1 }, /body\/type must be one of the job types/],
    ['array body', [1, 2], /body must be object/],
    ['null body', null, /body must be object/]
  ]
  for (const [what, payload, message] of cases) {
    const res = await app.inject({ method: 'POST', url: '/api/jobs', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) })
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message }, `${what}: ${res.json().message}`)
  }
  const broken = await app.inject({ method: 'POST', url: '/api/jobs', headers: { 'content-type': 'application/json' }, payload: '{"n": 4,' })
  t.equal(broken.statusCode, 400, 'malformed JSON: 400')
  t.match(broken.json(), { statusCode: 400, error: 'Bad Request' }, 'malformed JSON: Fastify error shape')
  const empty = await app.inject({ method: 'POST', url: '/api/jobs', headers: { 'content-type': 'application/json' }, payload: '' })
  t.equal(empty.statusCode, 400, 'empty JSON body: 400')
  const text = await app.inject({ method: 'POST', url: '/api/jobs', headers: { 'content-type': 'text/plain' }, payload: 'n=4' })
  t.equal(text.statusCode, 415, 'not JSON at all: 415 Unsupported Media Type')
  t.equal(rows(), 0, 'no row was created by any of them')
})

t.test('the typed body {type, params} is the same job as the flat shorthand', async (t) => {
  const { app } = await setup(t)
  const typed = await app.inject({ method: 'POST', url: '/api/jobs', payload: { type: 'lyapunov', params: { n: 30, steps: 7, seed: 5 }, name: 'typed', priority: 1, timeoutSeconds: 60 } })
  t.equal(typed.statusCode, 201, '201 Created')
  t.match(typed.json(), { type: 'lyapunov', name: 'typed', steps: 7, priority: 1, timeoutSeconds: 60, params: { n: 30, steps: 7, seed: 5 } }, 'fields as sent; steps from the type')
  const flat = await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 30, steps: 7, seed: 5 } })
  t.same(flat.json().params, typed.json().params, 'the flat body stores the same params')
  const noSeed = await app.inject({ method: 'POST', url: '/api/jobs', payload: { type: 'lyapunov', params: { n: 30, steps: 7 } } })
  t.ok(Number.isInteger(noSeed.json().params.seed), 'prepare() drew the seed at submit')
})

t.test('ids in the path must be positive integers', async (t) => {
  const { app } = await setup(t)
  for (const id of ['abc', '0', '-1', '1.5']) {
    const res = await app.inject({ url: `/api/jobs/${id}` })
    t.equal(res.statusCode, 400, `GET /api/jobs/${id}: 400`)
    t.match(res.json().message, /params\/id/, 'message names the id')
  }
  const missing = await app.inject({ url: '/api/jobs/42' })
  t.equal(missing.statusCode, 404, 'unknown id: 404')
  t.match(missing.json(), { statusCode: 404, error: 'Not Found', message: 'job 42 not found' }, '404 body')
  t.equal((await app.inject({ method: 'POST', url: '/api/jobs/42/cancel' })).statusCode, 404, 'cancel unknown: 404')
  t.equal((await app.inject({ method: 'DELETE', url: '/api/jobs/42' })).statusCode, 404, 'delete unknown: 404')
  t.equal((await app.inject({ method: 'POST', url: '/api/jobs/42/retry' })).statusCode, 404, 'retry unknown: 404')
})

t.test('cancel, retry and delete follow the job lifecycle', async (t) => {
  const { app, store } = await setup(t)
  const id = (await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 4, steps: 2, seed: 7 } })).json().id
  t.equal((await app.inject({ method: 'DELETE', url: `/api/jobs/${id}` })).statusCode, 409, 'deleting a pending job: 409')
  t.equal((await app.inject({ method: 'POST', url: `/api/jobs/${id}/retry` })).statusCode, 409, 'retrying a pending job: 409')
  const canceled = await app.inject({ method: 'POST', url: `/api/jobs/${id}/cancel` })
  t.equal(canceled.statusCode, 200, 'cancel: 200')
  t.equal(canceled.json().status, 'canceled', 'pending → canceled at once')
  const again = await app.inject({ method: 'POST', url: `/api/jobs/${id}/cancel` })
  t.equal(again.statusCode, 409, 'cancel a finished job: 409')
  t.match(again.json(), { statusCode: 409, error: 'Conflict', message: /already canceled/ }, '409 body')
  const retry = await app.inject({ method: 'POST', url: `/api/jobs/${id}/retry` })
  t.equal(retry.statusCode, 201, 'retry: 201')
  t.match(retry.json(), { status: 'pending', retryOf: id, params: { n: 4, steps: 2, seed: 7 } }, 'same params, seed included')
  t.equal(retry.headers.location, `/api/jobs/${retry.json().id}`, 'Location of the new job')

  const running = retry.json().id
  store.claimNext('w')
  const asked = await app.inject({ method: 'POST', url: `/api/jobs/${running}/cancel` })
  t.equal(asked.statusCode, 200, 'cancel a running job: 200')
  t.match(asked.json(), { status: 'running', cancelRequested: true }, 'the request is recorded for the worker')

  const del = await app.inject({ method: 'DELETE', url: `/api/jobs/${id}` })
  t.equal(del.statusCode, 204, 'delete a finished job: 204')
  t.equal(del.body, '', 'no body')
  t.equal((await app.inject({ url: `/api/jobs/${id}` })).statusCode, 404, 'gone')
})

t.test('GET /api/jobs pages newest first, filters by status, validates the query', async (t) => {
  const { app } = await setup(t)
  for (let i = 0; i < 7; i++) await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })
  await app.inject({ method: 'POST', url: '/api/jobs/3/cancel' })
  const first = (await app.inject({ url: '/api/jobs?limit=3' })).json()
  t.same(first.jobs.map((j: { id: number }) => j.id), [7, 6, 5], 'first page')
  t.equal(first.nextCursor, 5, 'cursor')
  const second = (await app.inject({ url: `/api/jobs?limit=3&cursor=${first.nextCursor}` })).json()
  t.same(second.jobs.map((j: { id: number }) => j.id), [4, 3, 2], 'second page')
  const last = (await app.inject({ url: `/api/jobs?limit=3&cursor=${second.nextCursor}` })).json()
  t.same(last, { jobs: last.jobs, nextCursor: null }, 'last page has no cursor')
  t.same(last.jobs.map((j: { id: number }) => j.id), [1], 'last page')
  const canceled = (await app.inject({ url: '/api/jobs?status=canceled' })).json()
  t.same(canceled.jobs.map((j: { id: number }) => j.id), [3], 'status filter')
  const all = (await app.inject({ url: '/api/jobs' })).json()
  t.equal(all.jobs.length, 7, 'default limit covers them')
  for (const bad of ['limit=0', 'limit=501', 'limit=x', 'status=lost', 'cursor=-3', 'other=1']) {
    const res = await app.inject({ url: `/api/jobs?${bad}` })
    t.equal(res.statusCode, 400, `?${bad}: 400`)
  }
})

t.test('Idempotency-Key returns the same job for a repeated key', async (t) => {
  const { app, rows } = await setup(t)
  const headers = { 'idempotency-key': 'order-17' }
  const one = await app.inject({ method: 'POST', url: '/api/jobs', headers, payload: { n: 3, steps: 3 } })
  const two = await app.inject({ method: 'POST', url: '/api/jobs', headers, payload: { n: 3, steps: 3 } })
  t.equal(one.statusCode, 201, 'first: 201')
  t.equal(two.statusCode, 200, 'repeat: 200')
  t.equal(two.json().id, one.json().id, 'same job')
  t.equal(two.json().params.seed, one.json().params.seed, 'same seed')
  t.equal(rows(), 1, 'one row')
})

t.test('the same Idempotency-Key with a different request is a 409 naming the key, and creates nothing', async (t) => {
  const { app, rows } = await setup(t)
  const headers = { 'idempotency-key': 'order-18' }
  const one = await app.inject({ method: 'POST', url: '/api/jobs', headers, payload: { n: 3, steps: 3, priority: 1 } })
  t.equal(one.statusCode, 201, 'first: 201')
  for (const payload of [{ n: 4, steps: 3, priority: 1 }, { n: 3, steps: 3 }, { n: 3, steps: 3, priority: 1, seed: one.json().params.seed + 1 }, { n: 3, steps: 3, priority: 1, name: 'x' }]) {
    const res = await app.inject({ method: 'POST', url: '/api/jobs', headers, payload })
    t.equal(res.statusCode, 409, `${JSON.stringify(payload)}: 409`)
    t.match(res.json(), { statusCode: 409, error: 'Conflict', message: new RegExp(`Idempotency-Key "order-18" was already used for job ${one.json().id} with a different request`) }, res.json().message)
  }
  const same = await app.inject({ method: 'POST', url: '/api/jobs', headers, payload: { n: 3, steps: 3, priority: 1, seed: one.json().params.seed } })
  t.equal(same.statusCode, 200, 'the same request with the seed it was given spelled out: 200')
  t.equal(rows(), 1, 'one row')
})

t.test('a full queue answers 429 with Retry-After and creates nothing', async (t) => {
  const { app, rows } = await setup(t, { MAX_PENDING: '3' })
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })).statusCode, 201, `job ${i + 1} accepted`)
  const full = await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })
  t.equal(full.statusCode, 429, '429')
  t.equal(full.headers['retry-after'], '5', 'Retry-After')
  t.match(full.json(), { statusCode: 429, error: 'Too Many Requests', message: /queue is full/ }, 'clear message')
  t.equal(rows(), 3, 'no fourth row')
})

t.test('/healthz answers', async (t) => {
  const { app } = await setup(t)
  const res = await app.inject({ url: '/healthz' })
  t.equal(res.statusCode, 200, '200')
  t.same(res.json(), { status: 'ok' }, 'body')
})
