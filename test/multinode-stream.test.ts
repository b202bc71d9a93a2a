/**
 * Several nodes on one PostgreSQL, with real processes (test/fixtures/nodes.ts): a cancel across nodes, the live
 * stream across nodes with a transaction committed late, and PostgreSQL restarted under running jobs.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import type { Test } from 'tap'
import t from 'tap'
import { api, logLines, pidRunning, startServer, waitFor } from './fixtures/helpers.js'
import { allDone, FAST, history, job, reference, shared as sharedDb } from './fixtures/nodes.js'
import { type PgCluster, startPostgres } from './fixtures/postgres.js'
import { openStream } from './fixtures/sse.js'

t.setTimeout(600_000)

let cluster: PgCluster
t.before(async () => { cluster = await startPostgres(t) })
const shared = (t: Test) => sharedDb(t, cluster)

t.test('a cancel sent to one node stops a worker of another node, through the database', async (t) => {
  const { node } = await shared(t)
  const a = await node('a')
  const { body: created } = await api(a.url, '/api/jobs', { body: { n: 80, steps: 8000, seed: 51 } })
  const running = await waitFor(async () => { const j = await job(a.url, created.id); return j.step > 0 && j.pid && j }, 60_000, 'running on a')
  const b = await node('b')
  const asked = Date.now()
  const { status } = await api(b.url, `/api/jobs/${created.id}/cancel`, { method: 'POST', body: {} })
  t.equal(status, 200, 'node b accepts the cancel of node a\'s job')
  const canceled = await waitFor(async () => { const j = await job(b.url, created.id); return j.status === 'canceled' && j }, 10_000, 'canceled')
  const took = Date.now() - asked
  t.ok(took < Number(FAST.STOP_GRACE_MS) + 1000, `canceled ${took} ms after the request (stop grace ${FAST.STOP_GRACE_MS} ms)`)
  t.equal(canceled.attempts, 1, 'by its own worker, not a takeover')
  await waitFor(() => !pidRunning(running.pid), 5000, 'node a\'s worker exited')
  t.pass(`worker ${running.pid} of node a exited`)
})

t.test('feed across nodes: a change committed late is delivered once, in order, on both nodes\' streams', async (t) => {
  const { url, node } = await shared(t)
  const a = await node('a', { MAX_CONCURRENCY: '1' })
  const b = await node('b', { MAX_CONCURRENCY: '1' })
  const sa = await openStream(t, a.url)
  const sb = await openStream(t, b.url)
  t.equal(sa.status, 200)
  t.equal(sb.status, 200)
  // A job nobody runs (a cancel makes it final at once), renamed in a transaction held open while others commit.
  const { body: held } = await api(a.url, '/api/jobs', { body: { n: 4, steps: 10, seed: 1, priority: -5 } })
  await api(a.url, `/api/jobs/${held.id}/cancel`, { method: 'POST', body: {} })
  const holder = new pg.Client({ connectionString: url })
  await holder.connect()
  t.teardown(() => holder.end().catch(() => {}))
  await holder.query('BEGIN')
  await holder.query("UPDATE jobs SET name = 'held back' WHERE id = $1", [held.id])
  const later: number[] = []
  for (let i = 0; i < 5; i++) later.push((await api(b.url, '/api/jobs', { body: { n: 4, steps: 10, seed: 100 + i } })).body.id)
  await sleep(1000)
  await holder.query('COMMIT')
  for (const s of [sa, sb]) {
    await waitFor(() => s.jobs().some((j) => j.id === held.id && j.name === 'held back'), 10_000, 'the held change')
    await waitFor(() => later.every((id) => s.jobs().some((j) => j.id === id && j.status === 'done')), 60_000, 'later jobs done')
  }
  for (const [name, s] of [['a', sa], ['b', sb]] as const) {
    const ids = s.frames.filter((f) => f.id !== undefined).map((f) => f.id as string)
    t.equal(new Set(ids).size, ids.length, `node ${name}: every event id once (${ids.length} events)`)
    const versions = new Map<number, number>()
    let backwards = 0
    for (const j of s.jobs()) {
      if ((versions.get(j.id) ?? -1) > j.version) backwards++
      versions.set(j.id, j.version)
    }
    t.equal(backwards, 0, `node ${name}: no job's version ever goes back`)
  }
  const names = (s: typeof sa) => s.jobs().filter((j) => j.id === held.id).map((j) => j.name)
  t.same(names(sa).at(-1), 'held back', 'node a ends on the committed state')
  t.same(names(sb).at(-1), 'held back', 'node b ends on the committed state')
})

t.test('PostgreSQL restarted mid-run → /readyz 503 meanwhile, then every job done once', async (t) => {
  const { url, db, node } = await shared(t)
  const a = await node('a')
  const b = await node('b')
  const params = [0, 1, 2, 3].map((i) => ({ n: 70, steps: 8000, seed: 41 + i }))
  const ids: number[] = []
  for (const [i, p] of params.entries()) ids.push((await api([a, b][i % 2].url, '/api/jobs', { body: p })).body.id)
  await waitFor(async () => {
    const { rows } = await db.query("SELECT count(*) AS n FROM jobs WHERE id = ANY($1::bigint[]) AND status = 'running' AND step > 0", [ids])
    return Number(rows[0].n) === 4
  }, 60_000, 'all four running')
  await db.end()
  const readyDuring: number[] = []
  const restarting = cluster.restart(2500)
  const probe = (async () => {
    const until = Date.now() + 2500
    while (Date.now() < until) {
      try { readyDuring.push((await fetch(`${a.url}/readyz`)).status) } catch { readyDuring.push(0) }
      await sleep(200)
    }
  })()
  await Promise.all([restarting, probe])
  t.ok(readyDuring.includes(503), `/readyz said 503 while PostgreSQL was down (${[...new Set(readyDuring)].join(', ')})`)
  await waitFor(async () => (await fetch(`${a.url}/readyz`)).status === 200, 30_000, '/readyz 200 again')
  const done = await allDone(b.url, ids, 180_000)
  for (const [i, j] of done.entries()) {
    const ref = reference(params[i])
    t.ok(Object.is(j.result.lyapunov, ref.lyapunov), `job ${j.id}: reference answer`)
  }
  const after = new pg.Client({ connectionString: url })
  await after.connect()
  t.teardown(() => after.end().catch(() => {}))
  const h = await history(after, ids)
  t.same(ids.map((id) => h.get(id)?.done), ids.map(() => 1), 'each job done once')
  for (const n of [a, b]) t.equal(await n.stop(), 0, 'clean stop after the outage')
})

t.test('a second server under a NODE_ID that is running refuses to start, changing nothing', async (t) => {
  const { node } = await shared(t)
  const a = await node('a')
  await t.rejects(node('a'), /NODE_ID a is in use by a running server/, 'refused, naming the holder')
  const { nodes } = (await api(a.url, '/api/nodes')).body
  t.same(nodes.map((n: { nodeId: string, pid: number }) => [n.nodeId, n.pid]), [['a', a.proc.pid]], 'the running node keeps its row')
  t.equal(await a.stop(), 0)
})

t.test('a node started while PostgreSQL is down waits for it (DB_WAIT_SECONDS), then serves; what waiting cannot fix exits at once', async (t) => {
  const { url, db } = await shared(t)
  await db.end()
  // restart() stops the cluster before it returns: the node below starts with nothing listening on the port, and
  // PostgreSQL stays down until the node has said twice that it waits (a node slow to start on a loaded machine
  // must still find it down).
  const lateLog = join(mkdtempSync(join(tmpdir(), 'nonstop-late-')), 'server.log')
  t.teardown(() => rmSync(dirname(lateLog), { recursive: true, force: true }))
  const waitMessage = 'PostgreSQL is not accepting connections yet; trying again'
  const warned = () => logLines(lateLog).filter((l) => l.msg === waitMessage).length
  const back = cluster.restart(waitFor(() => warned() >= 2, 60_000, 'the late node to say twice that it waits'))
  const waited = await startServer(t, { ...FAST, DATABASE_URL: url, NODE_ID: 'late', DB_WAIT_SECONDS: '60', LOG_FILE: lateLog })
  await back
  const retries = waited.logs().filter((l) => l.msg === waitMessage)
  t.ok(retries.length >= 2, `it said so while waiting (${retries.length} warnings)`)
  t.match(retries[0], { level: 40, err: { code: 'ECONNREFUSED' }, attempt: 1, waitSeconds: 60 }, 'each warning says why, which try and how long it waits')
  const { body: created } = await api(waited.url, '/api/jobs', { body: { n: 4, steps: 20, seed: 3 } })
  const done = await waitFor(async () => { const j = (await api(waited.url, `/api/jobs/${created.id}`)).body; return j.status === 'done' && j }, 30_000, 'a job done')
  t.ok(Object.is(done.result.lyapunov, reference({ n: 4, steps: 20, seed: 3 }).lyapunov), 'then runs jobs as usual')
  t.equal(await waited.stop(), 0, 'and stops cleanly')

  // A database that does not exist: waiting cannot create it. Exit 1 at once, naming it.
  const missing = url.replace(/\/[^/]+$/, '/no_such_database')
  const started = Date.now()
  await t.rejects(startServer(t, { ...FAST, DATABASE_URL: missing, NODE_ID: 'missing', DB_WAIT_SECONDS: '60' }),
    /server exited with 1: .*no_such_database/, 'a missing database: exit 1 with its name')
  t.ok(Date.now() - started < 20_000, `without waiting the 60 s (${Date.now() - started} ms)`)

  // DB_WAIT_SECONDS=0: PostgreSQL down means exit 1, as before. Down until the node has exited (or has come up
  // wrongly), however long its start takes on a loaded machine.
  const t0 = Date.now()
  const impatient = startServer(t, { ...FAST, DATABASE_URL: url, NODE_ID: 'impatient', DB_WAIT_SECONDS: '0' })
  const down = cluster.restart(impatient)
  await t.rejects(impatient, /server exited with 1: .*cannot open the database/, 'DB_WAIT_SECONDS=0: exit 1 at the first refusal')
  t.ok(Date.now() - t0 < 15_000, `at once (${Date.now() - t0} ms)`)
  await down
})

t.test('a job type whose result() takes longer than the database\'s patience still ends once, on its first attempt', async (t) => {
  const { node } = await shared(t)
  // LEASE_MS 2500: PostgreSQL ends a session idle in a transaction after 1250 ms, and the worker gives a database
  // call about 2 s. result() takes 3.5 s, well inside the six leases a beating node's runnable worker is given.
  const a = await node('a', { JOB_TYPES_DIR: new URL('./fixtures/slow-result-types/', import.meta.url).pathname })
  const { status, body: created } = await api(a.url, '/api/jobs', { body: { type: 'slow-result', params: { ms: 3500 } } })
  t.equal(status, 201, 'submitted')
  const done = await waitFor(async () => { const j = (await api(a.url, `/api/jobs/${created.id}`)).body; return ['done', 'failed', 'canceled'].includes(j.status) && j }, 60_000, 'the job to end')
  t.equal(done.status, 'done', `done (${done.error ?? ''})`)
  t.equal(done.attempts, 1, 'on its first attempt')
  t.equal(done.result.tookMs, 3500, 'with the result it built')
  const m = (await api(a.url, `/api/matrices/${done.result.matrix}/data?format=json`)).body
  t.same(m, [[1.5, -2]], 'and the matrix it stored')
  t.notOk(a.logs().some((l) => l.event === 'self-fenced'), 'the worker never took itself for cut off')
  t.equal(await a.stop(), 0)
})
