import { once } from 'node:events'
import { connect } from 'node:net'
import type { Test } from 'tap'
import t from 'tap'
import { ConfigError } from '../../src/config.js'
import { buildApp } from '../../src/http/app.js'
import { hostName } from '../../src/http/origin.js'
import { testConfig, tmpDb } from '../fixtures/helpers.js'

const newJob = { type: 'lyapunov', name: null, params: { n: 2, steps: 2, seed: 1 }, steps: 2, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null }

async function setup (t: Test, env: Record<string, string> = {}) {
  const { store, jobs, db } = tmpDb(t)
  const app = await buildApp({ config: testConfig(env), store: jobs, scheduler: { wake () {} } })
  t.teardown(() => app.close())
  const rows = (): number => db.prepare('SELECT count(*) FROM jobs').pluck().get() as number
  return { app, store, rows }
}

t.test('a foreign Host (DNS rebinding) gets 421 on every route; loopback names with any port are served', async (t) => {
  const { app, store } = await setup(t)
  const { row } = store.submit(newJob, 10)
  for (const url of ['/', '/app.js', '/api/jobs', `/api/jobs/${row.id}`, '/api/events', '/healthz', '/metrics', '/docs/json', '/nothing-here']) {
    const res = await app.inject({ url, headers: { host: 'evil.example:3000' } })
    t.equal(res.statusCode, 421, `GET ${url} with a foreign Host: 421`)
    t.match(res.json(), { statusCode: 421, error: 'Misdirected Request', message: /does not answer to the host name "evil\.example:3000".*ALLOWED_HOSTS/ }, `${url}: clear message`)
  }
  const cancel = await app.inject({ method: 'POST', url: `/api/jobs/${row.id}/cancel`, headers: { host: 'rebound.evil.example' } })
  t.equal(cancel.statusCode, 421, 'a write with a foreign Host: 421')
  t.equal(store.get(row.id)?.status, 'pending', 'and it changed nothing')
  for (const host of ['localhost', 'localhost:3000', '127.0.0.1:49152', '[::1]:3000', 'LOCALHOST:80']) {
    t.equal((await app.inject({ url: '/api/jobs', headers: { host } })).statusCode, 200, `Host ${host}: served`)
  }
  for (const host of ['localhost.evil.example', '127.0.0.1.nip.io', 'local host']) {
    t.equal((await app.inject({ url: '/healthz', headers: { host } })).statusCode, 421, `Host ${JSON.stringify(host)}: refused`)
  }
})

t.test('a request with no Host header at all is refused, over a real socket', async (t) => {
  const { app } = await setup(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const socket = connect({ port, host: '127.0.0.1' })
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.write('GET /api/jobs HTTP/1.0\r\n\r\n')
  let reply = ''
  socket.setEncoding('utf8')
  socket.on('data', (c: string) => { reply += c })
  await once(socket, 'end')
  t.match(reply, /^HTTP\/1\.[01] (421|400)/, `refused (${reply.split('\r\n')[0]})`)
})

t.test('ALLOWED_HOSTS adds host names (any port); HOST adds the interface the server binds to', async (t) => {
  const { app } = await setup(t, { ALLOWED_HOSTS: 'jobs.example.com, Other.Example', HOST: '192.168.1.5', API_TOKEN: 'x' })
  for (const host of ['jobs.example.com', 'jobs.example.com:8443', 'other.example', '192.168.1.5:3000', 'localhost:3000']) {
    t.equal((await app.inject({ url: '/healthz', headers: { host } })).statusCode, 200, `Host ${host}: served`)
  }
  t.equal((await app.inject({ url: '/healthz', headers: { host: 'evil.example' } })).statusCode, 421, 'others still refused')
  t.throws(() => testConfig({ ALLOWED_HOSTS: 'https://jobs.example.com' }), ConfigError, 'a scheme is a configuration error')
  t.throws(() => testConfig({ ALLOWED_HOSTS: 'jobs.example.com:8443' }), /ALLOWED_HOSTS must be a comma-separated list of host names/, 'so is a port')
  t.equal(hostName('[::1]:80'), '[::1]', 'IPv6 host parsed')
})

t.test('cross-site writes get 403 and change nothing; curl and the page itself still work', async (t) => {
  const { app, store, rows } = await setup(t)
  const { row } = store.submit(newJob, 10)
  const host = '127.0.0.1:3000'
  const refused: Array<[string, Record<string, string>]> = [
    ['Origin of another site', { origin: 'https://evil.example' }],
    ['Origin of another port on this machine', { origin: 'http://127.0.0.1:8080' }],
    ['Origin "null" (sandboxed page)', { origin: 'null' }],
    ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site: same-site', { 'sec-fetch-site': 'same-site', origin: 'http://other.localhost:3000' }]
  ]
  for (const [what, headers] of refused) {
    const cancel = await app.inject({ method: 'POST', url: `/api/jobs/${row.id}/cancel`, headers: { host, ...headers } })
    t.equal(cancel.statusCode, 403, `cancel with ${what}: 403`)
    t.match(cancel.json(), { statusCode: 403, error: 'Forbidden', message: /cross-site requests are not accepted/ }, `${what}: clear message`)
    const submit = await app.inject({ method: 'POST', url: '/api/jobs', headers: { host, 'content-type': 'application/json', ...headers }, payload: { n: 2, steps: 2 } })
    t.equal(submit.statusCode, 403, `submit with ${what}: 403`)
    t.equal((await app.inject({ method: 'DELETE', url: `/api/jobs/${row.id}`, headers: { host, ...headers } })).statusCode, 403, `delete with ${what}: 403`)
  }
  t.equal(store.get(row.id)?.status, 'pending', 'the job was not canceled')
  t.equal(rows(), 1, 'no job was created')

  const page = await app.inject({ method: 'POST', url: '/api/jobs', headers: { host, origin: 'http://127.0.0.1:3000', 'sec-fetch-site': 'same-origin', 'content-type': 'application/json' }, payload: { n: 2, steps: 2 } })
  t.equal(page.statusCode, 201, 'the dashboard (same origin) submits')
  const curl = await app.inject({ method: 'POST', url: `/api/jobs/${row.id}/cancel`, headers: { host } })
  t.equal(curl.statusCode, 200, 'curl (no Origin, no Sec-Fetch-Site) cancels, with no body and no Content-Type')
  for (const url of ['/api/jobs', '/api/events', '/api/matrices/1/preview']) {
    const read = await app.inject({ url, headers: { host, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' } })
    t.equal(read.statusCode, 403, `a cross-site read of ${url} from another page is refused`)
  }
  const link = await app.inject({ url: '/', headers: { host, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' } })
  t.equal(link.statusCode, 200, 'following a link from another site to the dashboard still works')
})

t.test('a write with a body must be JSON: forms and text get 415 before anything happens', async (t) => {
  const { app, store, rows } = await setup(t)
  const { row } = store.submit(newJob, 10)
  store.cancel(row.id)
  const bodies: Array<[string, Record<string, string>, string]> = [
    ['a form', { 'content-type': 'application/x-www-form-urlencoded' }, 'n=2&steps=2'],
    ['text/plain', { 'content-type': 'text/plain' }, '{"n":2,"steps":2}'],
    ['multipart', { 'content-type': 'multipart/form-data; boundary=x' }, '--x--'],
    ['no Content-Type', {}, '{"n":2,"steps":2}']
  ]
  for (const [what, headers, payload] of bodies) {
    for (const [method, url] of [['POST', '/api/jobs'], ['POST', `/api/jobs/${row.id}/retry`], ['DELETE', `/api/jobs/${row.id}`]] as const) {
      const res = await app.inject({ method, url, headers, payload })
      t.equal(res.statusCode, 415, `${method} ${url} with ${what}: 415`)
    }
  }
  t.match((await app.inject({ method: 'POST', url: '/api/jobs', headers: { 'content-type': 'text/plain' }, payload: 'x' })).json(),
    { statusCode: 415, error: 'Unsupported Media Type', message: /must be JSON/ }, 'a clear message')
  t.equal(rows(), 1, 'nothing was created')
  t.ok(store.get(row.id), 'nothing was deleted')
  const retry = await app.inject({ method: 'POST', url: `/api/jobs/${row.id}/retry` })
  t.equal(retry.statusCode, 201, 'a retry with no body needs no Content-Type')
})
