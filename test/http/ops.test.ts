import type { Test } from 'tap'
import t from 'tap'
import { latestSchemaVersion } from '../../src/db.js'
import { buildApp } from '../../src/http/app.js'
import { checkDb } from '../../src/http/ops.js'
import type { SchedulerStats } from '../../src/jobs/scheduler.js'
import { testConfig, tmpDb } from '../fixtures/helpers.js'

/** The app over a real database file; no job runs here, so the scheduler only takes wake-ups. */
async function setup (t: Test, extra: { stats?: SchedulerStats, lastTickAt?: () => number | null } = {}) {
  const { store, jobs, db } = tmpDb(t)
  const scheduler = { wake () {}, ...extra }
  const app = await buildApp({ config: testConfig(), store: jobs, scheduler, dbReady: () => checkDb(db) })
  t.teardown(() => app.close())
  return { app, store, db }
}

/** The value of one sample line of the Prometheus text, or undefined when the line is absent. */
function sample (text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}

t.test('/healthz answers while the process runs', async (t) => {
  const { app } = await setup(t)
  const res = await app.inject({ url: '/healthz' })
  t.equal(res.statusCode, 200, '200')
  t.same(res.json(), { status: 'ok' }, 'body')
})

t.test('/readyz is 200 on a migrated, writable database and 503 otherwise', async (t) => {
  const { app, db } = await setup(t)
  const ok = await app.inject({ url: '/readyz' })
  t.equal(ok.statusCode, 200, 'ready')
  t.same(ok.json(), { status: 'ok' }, 'body')

  db.pragma('user_version = 0')
  const old = await app.inject({ url: '/readyz' })
  t.equal(old.statusCode, 503, 'an unmigrated schema is not ready')
  t.match(old.json(), { status: 'unavailable', reason: new RegExp(`schema is version 0, this code needs ${latestSchemaVersion()}`) }, 'the reason names the versions')
  db.pragma(`user_version = ${latestSchemaVersion()}`)
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 200, 'ready again once migrated')

  db.close()
  const closed = await app.inject({ url: '/readyz' })
  t.equal(closed.statusCode, 503, 'a closed database is not ready')
  t.match(closed.json(), { status: 'unavailable', reason: /closed/ }, 'the reason says so')
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, '/healthz still answers: the process is alive')
})

t.test('/readyz is 503 while the database is locked by another writer for longer than the busy timeout', async (t) => {
  const { db } = tmpDb(t)
  db.pragma('busy_timeout = 50')
  const { openDb } = await import('../../src/db.js')
  const other = openDb(db.name)
  t.teardown(() => other.close())
  other.prepare('BEGIN IMMEDIATE').run()
  t.throws(() => checkDb(db), { code: 'SQLITE_BUSY' }, 'no write lock: not ready')
  other.prepare('ROLLBACK').run()
  t.doesNotThrow(() => checkDb(db), 'lock released: ready')
})

t.test('/readyz awaits an async database check and scheduler health: a database that is down or hangs is 503 with the reason', async (t) => {
  const { jobs } = tmpDb(t)
  let db: 'up' | 'down' | 'hung' = 'up'
  let health = { ok: true, reason: undefined as string | undefined }
  const app = await buildApp({
    config: testConfig(),
    store: jobs,
    scheduler: { wake () {}, health: async () => health },
    dbReady: async () => {
      if (db === 'down') throw new Error('PostgreSQL: connect ECONNREFUSED 10.0.0.5:5432')
      if (db === 'hung') await new Promise(() => {})
    }
  })
  t.teardown(() => app.close())
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 200, 'up: ready')
  db = 'down'
  const down = await app.inject({ url: '/readyz' })
  t.equal(down.statusCode, 503, 'down: 503')
  t.same(down.json(), { status: 'unavailable', reason: 'PostgreSQL: connect ECONNREFUSED 10.0.0.5:5432' }, 'with the reason')
  db = 'up'
  health = { ok: false, reason: 'workers die at boot' }
  t.match((await app.inject({ url: '/readyz' })).json(), { status: 'unavailable', reason: 'workers die at boot' }, 'async scheduler health is awaited')

  const { default: Fastify } = await import('fastify')
  const { opsRoutes } = await import('../../src/http/ops.js')
  const bare = Fastify()
  t.teardown(() => bare.close())
  await bare.register(opsRoutes, { dbReady: () => new Promise(() => {}), readyTimeoutMs: 100 })
  const started = Date.now()
  const hung = await bare.inject({ url: '/readyz' })
  t.equal(hung.statusCode, 503, 'a database that does not answer: 503')
  t.same(hung.json(), { status: 'unavailable', reason: 'the database did not answer within 0.1 s' }, 'says so')
  t.ok(Date.now() - started < 2000, 'without waiting for it')
})

t.test('/readyz checks the scheduler when it reports its last pass', async (t) => {
  let last: number | null = null
  const { app } = await setup(t, { lastTickAt: () => last })
  const before = await app.inject({ url: '/readyz' })
  t.equal(before.statusCode, 503, 'not started: not ready')
  t.match(before.json().reason, /scheduler not started/, 'reason')
  last = Date.now() - 60_000
  const stale = await app.inject({ url: '/readyz' })
  t.equal(stale.statusCode, 503, 'a scheduler silent for a minute: not ready')
  t.match(stale.json().reason, /scheduler has not run for 60 s/, 'reason')
  last = Date.now()
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 200, 'a fresh pass: ready')
})

t.test('/metrics serves Prometheus text that follows the jobs and the scheduler', async (t) => {
  const stats: SchedulerStats = { forks: 2, lost: 1, requeued: 1, killed: 0 }
  const { app, store, db } = await setup(t, { stats })
  const scrape = async (): Promise<string> => {
    const res = await app.inject({ url: '/metrics' })
    t.equal(res.statusCode, 200, '200')
    t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/, 'Prometheus text format')
    return res.body
  }

  const first = await scrape()
  for (const name of [
    'nonstop_jobs', 'nonstop_queue_depth', 'nonstop_running_workers', 'nonstop_job_duration_seconds',
    'nonstop_job_queue_wait_seconds', 'nonstop_worker_forks_total', 'nonstop_worker_lost_total',
    'nonstop_jobs_requeued_total', 'nonstop_sqlite_errors_total', 'process_cpu_seconds_total', 'nodejs_eventloop_lag_seconds'
  ]) {
    t.match(first, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exposed`)
  }
  t.equal(sample(first, 'nonstop_jobs{status="pending"}'), 0, 'no pending job yet')
  t.equal(sample(first, 'nonstop_queue_depth'), 0, 'queue empty')
  t.equal(sample(first, 'nonstop_worker_forks_total'), 2, 'worker boots from scheduler.stats.forks')
  t.equal(sample(first, 'nonstop_worker_lost_total'), 1, 'crashes from scheduler.stats.lost')
  t.equal(sample(first, 'nonstop_jobs_requeued_total'), 1, 'retries from scheduler.stats.requeued')
  t.equal(sample(first, 'nonstop_job_duration_seconds_count'), undefined, 'no job has finished')

  const a = (await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })).json()
  await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })
  const second = await scrape()
  t.equal(sample(second, 'nonstop_jobs{status="pending"}'), 2, 'two pending after two submits')
  t.equal(sample(second, 'nonstop_queue_depth'), 2, 'queue depth 2')

  // A job taken by a worker 1.5 s after its submit that ran 2.5 s: both histograms see it once.
  const claimed = store.claimNext('w1')
  t.equal(claimed?.id, a.id, 'the first job is claimed')
  const third = await scrape()
  t.equal(sample(third, 'nonstop_running_workers'), 1, 'one running')
  t.equal(sample(third, 'nonstop_queue_depth'), 1, 'one left waiting')
  t.equal(sample(third, 'nonstop_job_queue_wait_seconds_count'), 1, 'the start was observed as a queue wait')
  if (claimed) store.complete(claimed, { ok: true })
  db.prepare('UPDATE jobs SET started_at = created_at + 1500, finished_at = created_at + 4000 WHERE id = ?').run(a.id)
  stats.forks = 5
  const fourth = await scrape()
  t.equal(sample(fourth, 'nonstop_jobs{status="done"}'), 1, 'one done')
  t.equal(sample(fourth, 'nonstop_job_duration_seconds_count{status="done"}'), 1, 'the finish was observed once')
  t.equal(sample(fourth, 'nonstop_job_duration_seconds_bucket{le="2.5",status="done"}'), 1, 'in the 2.5 s bucket')
  t.equal(sample(fourth, 'nonstop_job_duration_seconds_bucket{le="1",status="done"}'), 0, 'not in the 1 s bucket')
  t.equal(sample(fourth, 'nonstop_job_queue_wait_seconds_count'), 1, 'the start is not observed twice')
  t.equal(sample(fourth, 'nonstop_worker_forks_total'), 5, 'the counter follows the scheduler')
  const fifth = await scrape()
  t.equal(sample(fifth, 'nonstop_job_duration_seconds_count{status="done"}'), 1, 'a later scrape does not count it again')
})

t.test('/metrics counts SQLite errors by code', async (t) => {
  const { app, db } = await setup(t)
  db.exec("CREATE TRIGGER refuse BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'refused for the test'); END")
  const res = await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })
  t.equal(res.statusCode, 500, 'the failed insert is a 500')
  t.notMatch(res.body, /refused for the test/, 'the SQLite message is not shown to the client')
  await app.inject({ method: 'POST', url: '/api/jobs', payload: { n: 2, steps: 1 } })
  const text = (await app.inject({ url: '/metrics' })).body
  t.equal(sample(text, 'nonstop_sqlite_errors_total{code="SQLITE_CONSTRAINT_TRIGGER"}'), 2, 'both errors counted under their code')
  await app.inject({ url: '/api/jobs/999' })
  t.equal(sample((await app.inject({ url: '/metrics' })).body, 'nonstop_sqlite_errors_total{code="SQLITE_CONSTRAINT_TRIGGER"}'), 2, 'a 404 is not a SQLite error')
})

t.test('/docs/json is an OpenAPI 3 document with every route and its error responses', async (t) => {
  const { app } = await setup(t)
  const res = await app.inject({ url: '/docs/json' })
  t.equal(res.statusCode, 200, '200')
  const spec = res.json()
  t.match(spec.openapi, /^3\.\d+\.\d+$/, 'OpenAPI 3 version string')
  t.match(spec.info, { title: 'nonstop', version: /^\d+\.\d+\.\d+/ }, 'info with title and version')
  t.same(spec.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer', description: spec.components.securitySchemes.bearerAuth.description }, 'bearer scheme declared')

  // Every route the API serves, with the error statuses it can answer.
  const expected: Record<string, string[]> = {
    'post /api/jobs': ['400', '401', '429'],
    'get /api/jobs': ['400'],
    'get /api/jobs/{id}': ['400', '404'],
    'post /api/jobs/{id}/cancel': ['400', '401', '404', '409', '429'],
    'post /api/jobs/{id}/retry': ['400', '401', '404', '409', '429'],
    'delete /api/jobs/{id}': ['400', '401', '404', '409'],
    'get /healthz': [],
    'get /readyz': ['503'],
    'get /metrics': []
  }
  const operations: string[] = []
  for (const [path, item] of Object.entries<Record<string, any>>(spec.paths)) {
    t.match(path, /^\//, `${path}: a path starts with /`)
    for (const [method, op] of Object.entries<any>(item)) {
      const key = `${method} ${path}`
      operations.push(key)
      t.ok(['get', 'post', 'put', 'patch', 'delete'].includes(method), `${key}: an HTTP method`)
      t.type(op.summary, 'string', `${key}: has a summary`)
      t.ok(op.responses && Object.keys(op.responses).length > 0, `${key}: has responses`)
      for (const [status, response] of Object.entries<any>(op.responses)) {
        t.match(status, /^[1-5]\d\d$/, `${key} ${status}: a status code`)
        t.type(response.description, 'string', `${key} ${status}: a response has a description (required by OpenAPI)`)
      }
      for (const name of path.match(/\{(\w+)\}/g) ?? []) {
        t.ok(op.parameters?.some((p: any) => p.in === 'path' && `{${p.name}}` === name && p.required === true), `${key}: path parameter ${name} declared`)
      }
      const mutating = method !== 'get'
      t.equal(Boolean(op.security?.some((s: any) => 'bearerAuth' in s)), mutating, `${key}: bearer security only on mutating routes`)
    }
  }
  for (const [key, statuses] of Object.entries(expected)) {
    const [method, path] = key.split(' ')
    const op = spec.paths[path]?.[method]
    if (!t.ok(op, `${key} is in the spec`)) continue
    for (const status of statuses) t.ok(op.responses[status], `${key} documents ${status}`)
    for (const status of ['400', '401', '404', '409', '429']) {
      if (op.responses[status]) t.match(op.responses[status].content['application/json'].schema.required, ['statusCode', 'error', 'message'], `${key} ${status}: Fastify's error shape`)
    }
  }
  t.notOk(operations.some((o) => o.includes('/docs') || o.includes('*')), 'the docs UI and static files are not API operations')
})

t.test('/docs serves Swagger UI under its own Content-Security-Policy', async (t) => {
  const { app } = await setup(t)
  const page = await app.inject({ url: '/docs/' })
  t.equal(page.statusCode, 200, '200')
  t.match(page.headers['content-type'], /^text\/html/, 'HTML')
  t.match(page.body, /swagger-ui-bundle\.js/, 'loads the Swagger UI bundle')
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, /script-src 'self'/, 'scripts from this origin')
  t.match(csp, /connect-src 'self'/, 'may fetch the spec')
  t.match(csp, /img-src 'self' data:/, 'icons as data: images')
  t.notMatch(csp, /script-src[^;]*'unsafe-inline'/, 'still no inline scripts')
  const bundle = await app.inject({ url: '/docs/static/swagger-ui-bundle.js' })
  t.equal(bundle.statusCode, 200, 'the bundle is served')
  t.match(bundle.headers['content-type'], /javascript/, 'as JavaScript')
  const init = await app.inject({ url: '/docs/static/swagger-initializer.js' })
  t.match(init.body, /\.\/json|\/docs\/json/, 'the UI is pointed at the spec')
  const dashboard = await app.inject({ url: '/' })
  t.not(dashboard.headers['content-security-policy'], csp, 'the dashboard keeps the strict app-wide policy')
})
