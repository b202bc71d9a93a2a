import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { testConfig, tmpDb } from '../fixtures/helpers.js'

t.test('POSTs past RATE_LIMIT_MAX per minute get 429 with Retry-After; other methods are not counted', async (t) => {
  const { store, jobs } = tmpDb(t)
  const app = await buildApp({ config: testConfig({ RATE_LIMIT_MAX: '3' }), store: jobs, scheduler: { wake () {} } })
  t.teardown(() => app.close())
  const submit = (remoteAddress = '127.0.0.1') =>
    app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 }, remoteAddress })

  for (let i = 1; i <= 3; i++) {
    const res = await submit()
    t.equal(res.statusCode, 201, `submit ${i} of 3: 201`)
    t.equal(res.headers['x-ratelimit-remaining'], String(3 - i), `${3 - i} left`)
  }
  const refused = await submit()
  t.equal(refused.statusCode, 429, 'the fourth: 429')
  const retryAfter = Number(refused.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= 60, `Retry-After is seconds within the minute (${refused.headers['retry-after']})`)
  t.match(refused.json(), { statusCode: 429, error: 'Too Many Requests', message: /rate limit/i }, 'Fastify\'s error shape')
  t.equal(store.counts().pending, 3, 'the refused submit created nothing')

  const bad = await app.inject({ method: 'POST', url: '/api/jobs/1/cancel' })
  t.equal(bad.statusCode, 429, 'every POST route shares the limit')
  t.equal((await app.inject({ url: '/api/jobs' })).statusCode, 200, 'GET is not limited')
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, '/healthz is not limited')
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 200, '/metrics is not limited')
  t.equal((await app.inject({ method: 'DELETE', url: '/api/jobs/1' })).statusCode, 409, 'DELETE is not limited (409: the job is pending)')
  t.equal((await submit('127.0.0.2')).statusCode, 201, 'another client has its own allowance')
})

t.test('the default limit is RATE_LIMIT_MAX=600 and a burst under it passes', async (t) => {
  const { jobs } = tmpDb(t)
  const config = testConfig()
  t.equal(config.rateLimitMax, 600, 'default from src/config.ts')
  const app = await buildApp({ config, store: jobs, scheduler: { wake () {} } })
  t.teardown(() => app.close())
  const codes = new Set<number>()
  for (let i = 0; i < 600; i++) {
    codes.add((await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })).statusCode)
  }
  t.same([...codes], [201], '600 submits in a row: all 201')
  t.equal((await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })).statusCode, 429, 'the 601st: 429')
})
