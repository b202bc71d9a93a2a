import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { bearerMatches } from '../../src/http/auth.js'
import { createLogger } from '../../src/log.js'
import { testConfig, tmpDb } from '../fixtures/helpers.js'

const TOKEN = 's3cret-token-for-tests-0123456789'

/** The app with the given environment, logging through the real factory to a file of the test's own. */
async function setup (t: Test, env: Record<string, string> = { API_TOKEN: TOKEN }) {
  const { store, jobs } = tmpDb(t)
  const logFile = join(t.testdir({}), 'app.log')
  const loggerInstance = createLogger({ logLevel: 'trace', logFile })
  const app = await buildApp({ config: testConfig(env), store: jobs, scheduler: { wake () {} }, loggerInstance })
  t.teardown(() => app.close())
  const log = (): string => readFileSync(logFile, 'utf8')
  return { app, store, log }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

t.test('bearerMatches accepts exactly "Bearer <token>"', async (t) => {
  t.ok(bearerMatches(`Bearer ${TOKEN}`, TOKEN), 'the token')
  t.ok(bearerMatches(`bearer ${TOKEN}`, TOKEN), 'the scheme name is case-insensitive')
  t.notOk(bearerMatches(undefined, TOKEN), 'no header')
  t.notOk(bearerMatches('', TOKEN), 'empty header')
  t.notOk(bearerMatches(TOKEN, TOKEN), 'no scheme')
  t.notOk(bearerMatches(`Basic ${TOKEN}`, TOKEN), 'another scheme')
  t.notOk(bearerMatches(`Bearer ${TOKEN}x`, TOKEN), 'one character more')
  t.notOk(bearerMatches(`Bearer ${TOKEN.slice(0, -1)}`, TOKEN), 'one character less')
  t.notOk(bearerMatches('Bearer ', TOKEN), 'empty token')
  t.notOk(bearerMatches(`Bearer ${TOKEN} extra`, TOKEN), 'trailing words')
})

t.test('with API_TOKEN, mutating routes answer 401 without the right token', async (t) => {
  const { app, store } = await setup(t)
  const id = store.submit({ type: 'lyapunov', name: null, params: { n: 2, steps: 1, seed: 1 }, steps: 1, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null }, 100).row.id
  const requests = [
    { method: 'POST' as const, url: '/api/jobs', payload: { n: 2, steps: 1 } },
    { method: 'POST' as const, url: `/api/jobs/${id}/cancel` },
    { method: 'POST' as const, url: `/api/jobs/${id}/retry` },
    { method: 'DELETE' as const, url: `/api/jobs/${id}` }
  ]
  for (const req of requests) {
    for (const [what, headers] of [
      ['no header', {}],
      ['a wrong token', bearer('wrong')],
      ['a wrong token of the same length', bearer('x'.repeat(TOKEN.length))],
      ['another scheme', { authorization: `Basic ${Buffer.from(`user:${TOKEN}`).toString('base64')}` }]
    ] as const) {
      const res = await app.inject({ ...req, headers })
      t.equal(res.statusCode, 401, `${req.method} ${req.url} with ${what}: 401`)
      t.same(Object.keys(res.json()).sort(), ['error', 'message', 'statusCode'], 'Fastify\'s error shape')
      t.match(res.json(), { statusCode: 401, error: 'Unauthorized' }, 'status and reason')
      t.match(res.headers['www-authenticate'], /^Bearer/, 'WWW-Authenticate names the scheme')
    }
  }
  t.equal(store.get(id)?.status, 'pending', 'nothing was canceled or deleted')
  t.equal(store.counts().pending, 1, 'nothing was submitted')
})

t.test('with API_TOKEN, the right token passes', async (t) => {
  const { app } = await setup(t)
  const created = await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 }, headers: bearer(TOKEN) })
  t.equal(created.statusCode, 201, 'submit: 201')
  const id = created.json().id
  const canceled = await app.inject({ method: 'POST', url: `/api/jobs/${id}/cancel`, headers: bearer(TOKEN) })
  t.equal(canceled.statusCode, 200, 'cancel: 200')
  const retried = await app.inject({ method: 'POST', url: `/api/jobs/${id}/retry`, headers: bearer(TOKEN) })
  t.equal(retried.statusCode, 201, 'retry: 201')
  const deleted = await app.inject({ method: 'DELETE', url: `/api/jobs/${id}`, headers: bearer(TOKEN) })
  t.equal(deleted.statusCode, 204, 'delete: 204')
})

t.test('with API_TOKEN, reads, health, metrics and docs stay open', async (t) => {
  const { app } = await setup(t)
  for (const url of ['/api/jobs', '/healthz', '/readyz', '/metrics', '/docs/json', '/docs/', '/']) {
    t.equal((await app.inject({ url })).statusCode, 200, `GET ${url}: 200 without a token`)
  }
  t.equal((await app.inject({ url: '/api/jobs/42' })).statusCode, 404, 'GET of a missing job: 404, not 401')
})

t.test('without API_TOKEN, nothing needs a token', async (t) => {
  const { app } = await setup(t, {})
  const res = await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })
  t.equal(res.statusCode, 201, 'submit without a header: 201')
  const del = await app.inject({ method: 'DELETE', url: `/api/jobs/${res.json().id}` })
  t.equal(del.statusCode, 409, 'delete reaches the handler (409: the job is pending)')
})

t.test('the Authorization header never reaches the log', async (t) => {
  const { app, log } = await setup(t)
  await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 }, headers: bearer(TOKEN) })
  await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 }, headers: bearer(`${TOKEN}-wrong`) })
  await app.inject({ url: '/api/jobs', headers: bearer(TOKEN) })
  const text = log()
  const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l))
  t.ok(lines.some((l) => l.msg === 'incoming request' && l.req?.method === 'POST'), 'requests are logged (one line each, by Fastify)')
  t.ok(lines.some((l) => l.msg === 'request completed' && l.res?.statusCode === 401), 'the refused request is logged with its status')
  t.ok(lines.some((l) => l.event === 'submitted' && typeof l.jobId === 'number'), 'the submit is logged with its jobId')
  t.ok(lines.some((l) => l.event === 'unauthorized'), 'the refusal is logged')
  t.notMatch(text, TOKEN, 'the token appears nowhere in the log')
  t.notMatch(text, /authorization/i, 'nor does the header name')
})

t.test('the logger redacts an Authorization header if one is ever logged', async (t) => {
  const logFile = join(t.testdir({}), 'redact.log')
  const log = createLogger({ logLevel: 'info', logFile })
  log.info({ req: { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, host: 'x' } } }, 'request with headers')
  log.info({ headers: { authorization: `Bearer ${TOKEN}` } }, 'bare headers')
  const [first, second] = readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.equal(first.req.headers.authorization, '[redacted]', 'req.headers.authorization censored')
  t.equal(first.req.headers.host, 'x', 'other headers kept')
  t.equal(second.headers.authorization, '[redacted]', 'headers.authorization censored')
  t.notMatch(readFileSync(logFile, 'utf8'), TOKEN, 'the token is not in the file')
})
