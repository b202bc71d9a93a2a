/**
 * Several nodes on one PostgreSQL, with real processes: each node is the built server (dist/server.js, as
 * `npm start` runs it) with its own port, node id and forked workers, all sharing a throwaway PostgreSQL cluster.
 * Every test checks what the database holds afterwards (each job's history), not only what the API says.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import type { Test } from 'tap'
import t from 'tap'
import { LyapunovRun } from '../src/jobs/lyapunov.js'
import { api, pidRunning, type ServerProcess, startServer, waitFor } from './fixtures/helpers.js'
import { type PgCluster, startPostgres } from './fixtures/postgres.js'
import { openStream } from './fixtures/sse.js'

const FAST = { HEARTBEAT_MS: '200', CHECKPOINT_MS: '300', LEASE_MS: '2500', STOP_GRACE_MS: '1500', MAX_CONCURRENCY: '2', WARM_SPARE: 'false' }

function reference (params: { n: number, steps: number, seed: number }) {
  const run = new LyapunovRun(params)
  while (!run.finished) run.advance()
  return run.result()
}

let cluster: PgCluster
t.before(async () => { cluster = await startPostgres(t) })

/** A new database on the cluster, a client to inspect it (closed at teardown), and a way to start nodes on it. */
async function shared (t: Test) {
  const url = await cluster.createDatabase()
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  t.teardown(() => db.end().catch(() => {}))
  const node = (id: string, env: Record<string, string> = {}): Promise<ServerProcess> =>
    startServer(t, { ...FAST, DATABASE_URL: url, NODE_ID: id, ...env })
  return { url, db, node }
}

async function job (url: string, id: number) {
  return (await api(url, `/api/jobs/${id}`)).body
}

async function allDone (url: string, ids: number[], ms: number) {
  return waitFor(async () => {
    const jobs = await Promise.all(ids.map((id) => job(url, id)))
    return jobs.every((j) => j.status === 'done') && jobs
  }, ms, `${ids.length} jobs done`)
}

/** Per job: how many times it was claimed, started and finished, from its history in the database. */
async function history (db: pg.Client, ids: number[]) {
  const { rows } = await db.query<{ job_id: string, kind: string, n: string }>(
    'SELECT job_id, kind, count(*) AS n FROM job_events WHERE job_id = ANY($1::bigint[]) GROUP BY job_id, kind', [ids])
  const out = new Map<number, Record<string, number>>()
  for (const r of rows) {
    const entry = out.get(Number(r.job_id)) ?? {}
    entry[r.kind] = Number(r.n)
    out.set(Number(r.job_id), entry)
  }
  return out
}

t.test('three nodes race for 60 jobs: each claimed once, done once, spread over the nodes', async (t) => {
  const { db, node } = await shared(t)
  const nodes = await Promise.all(['a', 'b', 'c'].map((id) => node(id)))
  const ids: number[] = []
  for (let i = 0; i < 60; i++) {
    const { status, body } = await api(nodes[i % 3].url, '/api/jobs', { body: { n: 4, steps: 40, seed: i + 1 } })
    t.equal(status, 201)
    ids.push(body.id)
  }
  const jobs = await allDone(nodes[1].url, ids, 180_000)
  const seen = await history(db, ids)
  let wrong = 0
  for (const j of jobs) {
    const h = seen.get(j.id) ?? {}
    if (h.claimed !== 1 || h.done !== 1 || j.attempts !== 1) wrong++
    const ref = reference(j.params)
    if (!Object.is(j.result.lyapunov, ref.lyapunov)) wrong++
  }
  t.equal(wrong, 0, 'every job claimed once, done once, first attempt, with the reference answer')
  const { rows } = await db.query<{ node: string, n: string }>(
    'SELECT node, count(*) AS n FROM jobs WHERE id = ANY($1::bigint[]) GROUP BY node', [ids])
  t.ok(rows.length >= 2, `claims spread over ${rows.length} nodes: ${rows.map((r) => `${r.node ?? '?'}=${r.n}`).join(', ')}`)
  const listed = (await api(nodes[0].url, '/api/nodes')).body
  t.same(new Set(listed.nodes.map((n: { nodeId: string }) => n.nodeId)), new Set(['a', 'b', 'c']), 'every node lists the three')
  for (const n of nodes) t.equal(await n.stop(), 0, 'clean stop')
  const { rows: left } = await db.query('SELECT node_id FROM nodes')
  t.same(left, [], 'nodes leave the table when they stop')
})

t.test('a whole node SIGKILLed (server and workers) → another node resumes its jobs from their checkpoints, same bits', async (t) => {
  const { db, node } = await shared(t)
  const a = await node('a')
  const params = [{ n: 80, steps: 8000, seed: 21 }, { n: 80, steps: 8000, seed: 22 }]
  const ids: number[] = []
  for (const p of params) ids.push((await api(a.url, '/api/jobs', { body: p })).body.id)
  await waitFor(async () => {
    const { rows } = await db.query('SELECT count(*) AS n FROM checkpoints WHERE job_id = ANY($1::bigint[]) AND step > 0', [ids])
    return Number(rows[0].n) === 2
  }, 60_000, 'both jobs checkpointed on node a')
  const b = await node('b')
  const workerPids = (await Promise.all(ids.map((id) => job(a.url, id)))).map((j) => j.pid as number)
  const { rows: before } = await db.query<{ id: string, step: number }>('SELECT job_id AS id, step FROM checkpoints WHERE job_id = ANY($1::bigint[])', [ids])
  const killedAt = Date.now()
  process.kill(-a.proc.pid!, 'SIGKILL')
  await waitFor(() => workerPids.every((pid) => !pidRunning(pid)), 5000, 'node a and its workers gone')

  const resumed = await waitFor(async () => {
    const js = await Promise.all(ids.map((id) => job(b.url, id)))
    return js.every((j) => j.status === 'running' && j.attempts === 2) && js
  }, 30_000, 'node b running both jobs')
  const takeover = Date.now() - killedAt
  t.ok(takeover < Number(FAST.LEASE_MS) + 6000, `taken over ${takeover} ms after the kill (lease ${FAST.LEASE_MS} ms)`)
  t.equal(resumed.length, 2)
  const done = await allDone(b.url, ids, 180_000)
  for (const [i, j] of done.entries()) {
    const ref = reference(params[i])
    t.ok(Object.is(j.result.lyapunov, ref.lyapunov) && Object.is(j.result.trace, ref.trace), `job ${j.id}: bit-identical to an uninterrupted run`)
    const { rows } = await db.query<{ detail: string }>("SELECT detail FROM job_events WHERE job_id = $1 AND kind = 'started' ORDER BY id", [j.id])
    const from = JSON.parse(rows.at(-1)!.detail).resumedFromStep
    const saved = before.find((r) => Number(r.id) === j.id)!.step
    t.ok(from !== null && from >= saved, `job ${j.id} resumed from step ${from} (checkpoint at the kill: ${saved}), not from scratch`)
  }
  t.equal(await b.stop(), 0)
})

t.test('a node frozen (SIGSTOP) past its lease → another node takes over; thawed, its worker writes nothing and exits', async (t) => {
  const { db, node } = await shared(t)
  const a = await node('a')
  const params = { n: 80, steps: 8000, seed: 31 }
  const { body: created } = await api(a.url, '/api/jobs', { body: params })
  const first = await waitFor(async () => { const j = await job(a.url, created.id); return j.step > 20 && j.pid && j }, 60_000, 'progress on a')
  const b = await node('b')
  const frozen = [a.proc.pid!, first.pid as number]
  for (const pid of frozen) process.kill(pid, 'SIGSTOP')
  t.teardown(() => { for (const pid of frozen) try { process.kill(pid, 'SIGCONT') } catch {} })
  const taken = await waitFor(async () => { const j = await job(b.url, created.id); return j.attempts === 2 && j.status === 'running' && j }, 30_000, 'node b took the job')
  t.not(taken.pid, first.pid, 'a new worker computes it')
  const { rows: [{ id: lostAt }] } = await db.query<{ id: string }>("SELECT max(id) AS id FROM job_events WHERE job_id = $1 AND kind = 'lost'", [created.id])
  t.ok(lostAt, 'the first attempt was declared lost')
  for (const pid of frozen) process.kill(pid, 'SIGCONT')
  await waitFor(() => !pidRunning(first.pid), 15_000, 'the thawed worker exits')
  const done = await waitFor(async () => { const j = await job(b.url, created.id); return j.status === 'done' && j }, 120_000, 'done')
  const ref = reference(params)
  t.ok(Object.is(done.result.lyapunov, ref.lyapunov), 'the answer is the uninterrupted one')
  const { rows: late } = await db.query('SELECT kind, lease FROM job_events WHERE job_id = $1 AND id > $2 AND lease = 1', [created.id, lostAt])
  t.same(late, [], 'nothing written for the first attempt after it was lost')
  const h = (await history(db, [created.id])).get(created.id)!
  t.equal(h.done, 1, 'done once')
  t.equal(await a.stop(), 0, 'the thawed node stops cleanly')
  t.equal(await b.stop(), 0)
})

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
