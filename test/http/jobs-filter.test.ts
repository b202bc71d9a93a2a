import type { Test } from 'tap'
import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { filterSql } from '../../src/jobs/job-filter.js'
import type { NewJob } from '../../src/jobs/types.js'
import { testConfig, tmpDb } from '../fixtures/helpers.js'

const job = (over: Partial<NewJob> = {}): NewJob => ({
  type: 'lyapunov', name: null, params: { n: 4, steps: 3, seed: 1 }, steps: 3, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null, ...over
})

async function setup (t: Test, env: Record<string, string> = {}) {
  const { store, jobs, db } = tmpDb(t)
  const app = await buildApp({ config: testConfig(env), store: jobs, scheduler: { wake: () => {} } })
  t.teardown(() => app.close())
  // A job in any status, straight through the store's own transitions.
  const make = (status: string, over: Partial<NewJob> = {}): number => {
    const { row } = store.submit(job(over), 100000)
    if (status === 'pending') return row.id
    if (status === 'canceled') { store.cancel(row.id); return row.id }
    db.prepare('UPDATE jobs SET priority = 1000000 WHERE id = ?').run(row.id)
    const claim = store.claimNext(`w${row.id}`)!
    if (claim.id !== row.id) throw new Error('claimed another job')
    db.prepare('UPDATE jobs SET priority = 0 WHERE id = ?').run(row.id)
    if (status === 'done') store.complete(claim, { x: 1 })
    if (status === 'failed') store.fail(claim, 'boom')
    return row.id
  }
  const snapshot = (): string => JSON.stringify(db.prepare('SELECT id, status, stop_request, seq FROM jobs ORDER BY id').all())
  return { app, store, jobs, db, make, snapshot }
}

t.test('filters: several statuses, type, name contains, created between; counts per status', async (t) => {
  const { app, make, db } = await setup(t)
  const ids: Record<string, number[]> = { pending: [], running: [], done: [], failed: [], canceled: [] }
  const plan = ['failed', 'done', 'pending', 'failed', 'running', 'canceled', 'pending', 'done', 'failed', 'running', 'canceled', 'pending']
  for (const [i, status] of plan.entries()) {
    ids[status].push(make(status, { name: i === 3 ? 'Big_100%' : `${status} job ${i}`, type: i % 4 === 0 ? 'matmul' : 'lyapunov' }))
  }
  const list = async (qs: string): Promise<number[]> => {
    const res = await app.inject({ url: `/api/jobs?${qs}` })
    t.equal(res.statusCode, 200, `${qs}: 200`)
    return res.json().jobs.map((j: { id: number }) => j.id)
  }
  const desc = (a: number[]): number[] => [...a].sort((x, y) => y - x)
  t.same(await list('status=failed&status=canceled'), desc([...ids.failed, ...ids.canceled]), 'several statuses, repeated, newest first')
  t.same(await list('status=failed,canceled'), desc([...ids.failed, ...ids.canceled]), 'several statuses, comma-separated')
  t.same(await list('type=matmul'), desc([1, 5, 9]), 'one type')
  t.same(await list('status=failed&type=matmul'), [9, 1], 'status and type')
  t.same(await list('name=JOB%201'), [12, 11, 2], 'name contains, case-insensitive')
  t.same(await list('name=_100%25'), [4], '% and _ in the name are taken literally')
  t.same(await list('name=_'), [4], 'a lone _ matches only names with one')
  // Creation times 1 s apart, so the range is exact.
  db.prepare('UPDATE jobs SET created_at = 1000000000000 + id * 1000').run()
  const iso = (id: number): string => new Date(1000000000000 + id * 1000).toISOString()
  t.same(await list(`createdFrom=${iso(3)}&createdTo=${iso(6)}`), [5, 4, 3], 'created between: from inclusive, to exclusive')
  t.same(await list(`createdFrom=${iso(3)}&createdTo=${iso(6)}&status=failed`), [4], 'with a status')

  const pages: number[] = []
  let cursor = ''
  for (let i = 0; i < 10; i++) {
    const res = (await app.inject({ url: `/api/jobs?status=pending&status=done&status=running&limit=2${cursor}` })).json()
    pages.push(...res.jobs.map((j: { id: number }) => j.id))
    if (res.nextCursor === null) break
    cursor = `&cursor=${res.nextCursor}`
  }
  t.same(pages, desc([...ids.pending, ...ids.done, ...ids.running]), 'pages of several statuses join up, nothing twice, nothing missed')

  const counts = (await app.inject({ url: '/api/jobs/counts?type=lyapunov&status=failed' })).json()
  t.same(counts, { counts: { pending: 3, running: 1, done: 2, failed: 1, canceled: 2 }, total: 1 }, 'counts per status under the other conditions, total under all')
  t.same((await app.inject({ url: '/api/jobs/counts' })).json().total, 12, 'no filter: every job')
})

t.test('bad filters and bulk bodies get a 4xx naming the problem and change nothing', async (t) => {
  const { app, make, snapshot } = await setup(t)
  make('failed'); make('running'); make('done'); make('pending')
  const before = snapshot()
  const gets: Array<[string, RegExp]> = [
    ['status=lost', /querystring\/status "lost" is not a status; use pending, running, done, failed, canceled/],
    ['status=failed,sideways', /"sideways" is not a status/],
    ['createdFrom=yesterday', /querystring\/createdFrom must match format "date-time"/],
    ['createdTo=2026-13-45T00:00:00Z', /querystring\/createdTo must match format "date-time"/],
    ['createdFrom=2026-01-02T00:00:00Z&createdTo=2026-01-01T00:00:00Z', /createdFrom must not be later than createdTo/],
    ['type=Not A Type', /querystring\/type must match pattern/],
    ['name=' + 'x'.repeat(201), /querystring\/name must NOT have more than 200 characters/],
    ['colour=red', /querystring must NOT have additional properties/],
    ['status=a&status=b&status=c&status=d&status=e&status=f', /querystring\/status must NOT have more than 5 items/]
  ]
  for (const path of ['/api/jobs', '/api/jobs/counts']) {
    for (const [qs, message] of gets) {
      const res = await app.inject({ url: `${path}?${qs}` })
      t.equal(res.statusCode, 400, `GET ${path}?${qs.slice(0, 40)}: 400`)
      t.match(res.json(), { statusCode: 400, error: 'Bad Request', message }, `${qs.slice(0, 40)}: ${res.json().message}`)
    }
  }
  const bodies: Array<[string, unknown, RegExp]> = [
    ['unknown action', { action: 'explode', filter: {} }, /body\/action must be equal to one of the allowed values/],
    ['no action', { filter: {} }, /body must have required property 'action'/],
    ['no filter', { action: 'delete' }, /body must have required property 'filter'/],
    ['unknown status', { action: 'delete', filter: { status: ['gone'] } }, /body\/filter\/status "gone" is not a status/],
    ['status not a list', { action: 'delete', filter: { status: 'failed' } }, /body\/filter\/status must be array/],
    ['bad date', { action: 'delete', filter: { createdFrom: '2026-02-30' } }, /body\/filter\/createdFrom must match format "date-time"/],
    ['reversed dates', { action: 'retry', filter: { createdFrom: '2026-01-02T00:00:00Z', createdTo: '2026-01-01T00:00:00Z' } }, /createdFrom must not be later than createdTo/],
    ['extra property', { action: 'delete', filter: {}, force: true }, /body must NOT have additional properties/],
    ['extra filter property', { action: 'delete', filter: { id: 1 } }, /body\/filter must NOT have additional properties/],
    ['filter not an object', { action: 'delete', filter: 'all' }, /body\/filter must be object/],
    ['array body', [{ action: 'delete', filter: {} }], /body must be object/]
  ]
  for (const [what, payload, message] of bodies) {
    const res = await app.inject({ method: 'POST', url: '/api/jobs/bulk', payload: payload as object })
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message }, `${what}: ${res.json().message}`)
  }
  const text = await app.inject({ method: 'POST', url: '/api/jobs/bulk', headers: { 'content-type': 'text/plain' }, payload: 'action=delete' })
  t.equal(text.statusCode, 415, 'not JSON: 415')
  const cross = await app.inject({ method: 'POST', url: '/api/jobs/bulk', headers: { 'sec-fetch-site': 'cross-site' }, payload: { action: 'delete', filter: {} } })
  t.equal(cross.statusCode, 403, 'cross-site: 403')
  t.equal(snapshot(), before, 'no job changed')
})

t.test('bulk needs the token when API_TOKEN is set', async (t) => {
  const { app, make, snapshot } = await setup(t, { API_TOKEN: 'sesame' })
  make('failed')
  const before = snapshot()
  const res = await app.inject({ method: 'POST', url: '/api/jobs/bulk', payload: { action: 'delete', filter: {} } })
  t.equal(res.statusCode, 401, 'no token: 401')
  t.equal(snapshot(), before, 'nothing changed')
  const ok = await app.inject({ method: 'POST', url: '/api/jobs/bulk', headers: { authorization: 'Bearer sesame' }, payload: { action: 'delete', filter: {} } })
  t.equal(ok.statusCode, 200, 'with it: 200')
})

t.test('retry all failed retries exactly the failed jobs matching, over several batches, and leaves others alone', async (t) => {
  const { app, make, store, db } = await setup(t)
  const failed: number[] = []
  const others: number[] = []
  for (let i = 0; i < 450; i++) {
    const status = ['failed', 'done', 'canceled', 'pending', 'failed'][i % 5]
    const type = i % 3 === 0 ? 'matmul' : 'lyapunov'
    const id = make(status, { type })
    if (status === 'failed' && type === 'lyapunov') failed.push(id)
    else others.push(id)
  }
  const seqBefore = store.latestSeq()
  const othersBefore = JSON.stringify(db.prepare(`SELECT * FROM jobs WHERE id IN (${others.join(',')})`).all())
  const counted = (await app.inject({ url: '/api/jobs/counts?status=failed&type=lyapunov' })).json().total
  t.equal(counted, failed.length, `the API counts ${failed.length} failed lyapunov jobs`)
  const res = await app.inject({ method: 'POST', url: '/api/jobs/bulk', payload: { action: 'retry', filter: { status: ['failed'], type: 'lyapunov' } } })
  t.equal(res.statusCode, 200, '200')
  t.same(res.json(), { matched: failed.length, changed: failed.length, skipped: [], skippedTotal: 0, interrupted: false }, 'every matched job retried')
  const retries = db.prepare('SELECT retry_of FROM jobs WHERE retry_of IS NOT NULL ORDER BY retry_of').pluck().all()
  t.same(retries, [...failed].sort((a, b) => a - b), 'one new job for each failed lyapunov job, and none other')
  t.equal(JSON.stringify(db.prepare(`SELECT * FROM jobs WHERE id IN (${others.join(',')})`).all()), othersBefore, 'the other jobs are untouched')
  t.equal((await app.inject({ url: '/api/jobs/counts?type=lyapunov' })).json().counts.pending,
    others.filter((id) => store.get(id)!.status === 'pending' && store.get(id)!.type === 'lyapunov').length + failed.length, 'the API counts the new pending jobs')
  const changes = store.changesAfter(seqBefore, 5000)
  t.equal(changes.length, failed.length, 'every new job is on the live stream')
})

t.test('a second "retry all failed" retries nothing: each failed job already has its retry', async (t) => {
  const { app, make, db } = await setup(t)
  const failed = [make('failed'), make('failed'), make('failed')]
  const first = (await app.inject({ method: 'POST', url: '/api/jobs/bulk', payload: { action: 'retry', filter: { status: ['failed'] } } })).json()
  t.equal(first.changed, 3, 'the first retries all three')
  const retries = db.prepare('SELECT id, retry_of FROM jobs WHERE retry_of IS NOT NULL ORDER BY retry_of').all() as Array<{ id: number, retry_of: number }>
  const again = (await app.inject({ method: 'POST', url: '/api/jobs/bulk', payload: { action: 'retry', filter: { status: ['failed'] } } })).json()
  t.equal(again.changed, 0, 'the second retries none')
  t.same(again.skipped.sort((a: { id: number }, b: { id: number }) => a.id - b.id), retries.map((r) => ({ id: r.retry_of, reason: `already retried as job ${r.id}` })), 'each skipped, naming its retry')
  t.equal(db.prepare('SELECT count(*) FROM jobs WHERE retry_of IS NOT NULL').pluck().get(), failed.length, 'still one retry per failed job')
})

t.test('a bulk action pauses between batches and stops between two when the server closes', async (t) => {
  const { store, jobs, make } = await setup(t)
  const { runBulk, BULK_MIN_PAUSE_MS } = await import('../../src/jobs/bulk.js')
  for (let i = 0; i < 60; i++) make('failed')
  const at: number[] = []
  const paced = await runBulk(jobs, 'delete', {}, { maxPending: 1000, batch: 10, onBatch: () => at.push(performance.now()) })
  t.equal(paced.changed, 60, 'all 60 deleted, in 6 batches')
  const gaps = at.slice(1).map((x, i) => x - at[i])
  t.ok(gaps.every((g) => g >= BULK_MIN_PAUSE_MS - 1), `a pause of at least ${BULK_MIN_PAUSE_MS} ms between two batches (${gaps.map((g) => g.toFixed(1)).join(', ')} ms)`)

  for (let i = 0; i < 60; i++) make('failed')
  const closing = new AbortController()
  const cut = await runBulk(jobs, 'delete', {}, { maxPending: 1000, batch: 10, signal: closing.signal, onBatch: (so) => { if (so.changed >= 20) closing.abort() } })
  t.match(cut, { changed: 20, matched: 20, interrupted: true }, 'stopped after the batch in which the server began to close')
  t.equal(store.counts({}).failed, 40, 'the rest is left as it was')
})

t.test('bulk delete skips running and pending jobs with a reason; cancel asks running jobs to stop', async (t) => {
  const { app, make, store, db } = await setup(t)
  const running = make('running')
  const pending = make('pending')
  const done = make('done')
  const failed = make('failed')
  const seqBefore = store.latestSeq()
  const res = (await app.inject({ method: 'POST', url: '/api/jobs/bulk', payload: { action: 'delete', filter: {} } })).json()
  t.same(res, {
    matched: 4,
    changed: 2,
    skipped: [
      { id: pending, reason: 'pending: only finished jobs can be deleted (cancel it first)' },
      { id: running, reason: 'running: only finished jobs can be deleted (cancel it first)' }
    ],
    skippedTotal: 2,
    interrupted: false
  }, 'finished jobs deleted, the others skipped with why')
  t.same(db.prepare('SELECT id FROM jobs ORDER BY id').pluck().all(), [running, pending], 'the running and pending jobs remain')
  t.same(store.changesAfter(seqBefore).map((c) => c.deleted).sort(), [done, failed].sort(), 'each delete is on the live stream')
  t.equal(db.prepare(`SELECT count(*) FROM job_events WHERE job_id IN (${done}, ${failed})`).pluck().get(), 0, 'their history went with them')

  const cancel = (await app.inject({ method: 'POST', url: '/api/jobs/bulk', payload: { action: 'cancel', filter: { status: ['pending', 'running'] } } })).json()
  t.same(cancel, { matched: 2, changed: 2, skipped: [], skippedTotal: 0, interrupted: false }, 'both canceled')
  t.equal(store.get(pending)?.status, 'canceled', 'pending: canceled at once')
  t.equal(store.get(running)?.stop_request, 'cancel', 'running: asked to stop')
  t.match(store.events(running).at(-1), { kind: 'stop-requested', detail: '{"request":"cancel","by":"bulk"}' }, 'in its history, by a bulk action')
  const again = (await app.inject({ method: 'POST', url: '/api/jobs/bulk', payload: { action: 'cancel', filter: {} } })).json()
  t.same(again.changed, 0, 'canceling again changes nothing')
  t.same(again.skipped.map((s: { reason: string }) => s.reason).sort(), ['already asked to stop (cancel)', 'already canceled'], 'and says why')
})

t.test('log lines are read by two requests at a time; more are told to come back', async (t) => {
  const dir = t.testdir({})
  const { writeFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const logFile = join(dir, 'big.log')
  writeFileSync(logFile, Array.from({ length: 8000 }, (_, i) => JSON.stringify({ level: 30, time: 1, jobId: i % 3 + 1, msg: `line ${i}`, pad: 'x'.repeat(100) })).join('\n') + '\n')
  const { app, make } = await setup(t, { LOG_FILE: logFile })
  const id = make('done')
  const answers = await Promise.all(Array.from({ length: 8 }, () => app.inject({ url: `/api/jobs/${id}/log` })))
  const codes = answers.map((a) => a.statusCode)
  t.ok(codes.filter((c) => c === 200).length >= 2, `some read (${codes.join(' ')})`)
  t.ok(codes.every((c) => c === 200 || c === 429), 'the others 429')
  t.ok(codes.includes(429), 'eight at once are more than the log is read by')
  const busy = answers.find((a) => a.statusCode === 429)
  t.equal(busy?.headers['retry-after'], '1', 'with Retry-After')
  t.equal((await app.inject({ url: `/api/jobs/${id}/log` })).statusCode, 200, 'once they are done, a read goes through')
})

t.test('the skipped list is bounded', async (t) => {
  const { app, make } = await setup(t)
  for (let i = 0; i < 250; i++) make('pending')
  const res = (await app.inject({ method: 'POST', url: '/api/jobs/bulk', payload: { action: 'delete', filter: {} } })).json()
  t.equal(res.matched, 250, 'all matched')
  t.equal(res.skipped.length, 100, 'the first 100 listed')
  t.equal(res.skippedTotal, 250, 'all counted')
})

t.test('history and throughput routes', async (t) => {
  const { app, make } = await setup(t)
  const id = make('failed')
  const events = await app.inject({ url: `/api/jobs/${id}/events` })
  t.equal(events.statusCode, 200, '200')
  t.same(events.json().events.map((e: { message: string }) => e.message), ['submitted', 'attempt 1 claimed by a worker', 'attempt 1 failed at step 0 of 3 — boom'], 'its history')
  t.equal((await app.inject({ url: '/api/jobs/999/events' })).statusCode, 404, 'unknown job: 404')
  t.equal((await app.inject({ url: '/api/jobs/abc/events' })).statusCode, 400, 'bad id: 400')
  t.same((await app.inject({ url: `/api/jobs/${id}/log` })).json(), { jobId: id, logFile: false, bytesRead: 0, lines: [] }, 'log lines: none without LOG_FILE')
  t.equal((await app.inject({ url: '/api/jobs/999/log' })).statusCode, 404, 'log of an unknown job: 404')
  make('done'); make('done'); make('pending')
  const tp = await app.inject({ url: '/api/stats/throughput?minutes=60' })
  t.equal(tp.statusCode, 200, 'throughput: 200')
  const body = tp.json()
  t.equal(body.minutes.length, 60, 'one bucket per minute')
  t.same(body.minutes.at(-1).done, 2, 'the current minute counts the done jobs')
  t.same(body.minutes.at(-1).failed, 1, 'and the failed one')
  t.same([body.pending, body.running], [1, 0], 'the queue now')
  t.equal((await app.inject({ url: '/api/stats/throughput?minutes=0' })).statusCode, 400, 'minutes out of range: 400')
})

t.test('filtered pages and counts read through indexes', async (t) => {
  const { db } = await setup(t)
  const plan = (sql: string): string => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map((r) => r.detail).join(' | ')
  const cases: Array<[string, RegExp]> = [
    ["SELECT * FROM jobs WHERE id < 1e15 AND status = 'failed' ORDER BY id DESC LIMIT 51", /USING INDEX jobs_status_id/],
    ["SELECT * FROM jobs WHERE id < 1e15 AND status = 'failed' AND type = 'matmul' ORDER BY id DESC LIMIT 51", /USING INDEX jobs_status_type_id/],
    ["SELECT * FROM jobs WHERE id < 1e15 AND type = 'matmul' ORDER BY id DESC LIMIT 51", /USING INDEX jobs_type_id/],
    ["SELECT count(*) FROM jobs WHERE status = 'done'", /USING COVERING INDEX/],
    ["SELECT count(*) FROM jobs WHERE status = 'done' AND type = 'matmul'", /USING COVERING INDEX jobs_status_type_id/],
    ['SELECT CAST((finished_at - 0) / 60000 AS INTEGER) AS minute, status, count(*) AS c FROM jobs WHERE finished_at >= 0 AND finished_at IS NOT NULL GROUP BY minute, status', /USING COVERING INDEX jobs_finished/]
  ]
  cases.push(["SELECT count(*) FROM jobs WHERE status = 'done' AND created_at >= 0 AND created_at < 5", /USING COVERING INDEX jobs_status_created/])
  // One bound only: without the index forced, min(id) walks the table in id order and reads it all for an empty range.
  const { createdIdSql } = await import('../../src/jobs/job-filter.js')
  cases.push([createdIdSql('min', ['created_at >= 9e15']), /SEARCH jobs USING COVERING INDEX jobs_created \(created_at>\?\)/])
  cases.push([createdIdSql('max', ['created_at < 5']), /SEARCH jobs USING COVERING INDEX jobs_created \(created_at<\?\)/])
  const resolved = filterSql({ createdFrom: 0, createdTo: 5, createdIds: { min: 1, max: 9 } })
  cases.push([`SELECT * FROM jobs WHERE id < 1e15${resolved.where.replace(/@fFrom/g, '0').replace(/@fTo/g, '5').replace('@fIdMin', '1').replace('@fIdMax', '9')} ORDER BY id DESC LIMIT 51`,
    /^SEARCH jobs USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\)$/])
  const created = filterSql({ createdFrom: 0, createdTo: 5 })
  cases.push([`SELECT * FROM jobs WHERE id < 1e15${created.where.replace(/@fFrom/g, '0').replace(/@fTo/g, '5')} ORDER BY id DESC LIMIT 51`,
    /SEARCH jobs USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\).*SEARCH jobs USING COVERING INDEX jobs_created.*SEARCH jobs USING COVERING INDEX jobs_created/])
  for (const [sql, index] of cases) {
    const detail = plan(sql)
    t.match(detail, index, `${sql.slice(0, 90)}…: ${detail}`)
    t.notMatch(detail, /USE TEMP B-TREE FOR ORDER BY/, 'no sort')
  }
})
