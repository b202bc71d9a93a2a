// Several nodes on one PostgreSQL (a throwaway cluster, bench/postgres.js): submit→running p50 and the drain rate of
// tiny jobs with 1, 2 and 3 nodes, how long a killed node's job waits for another node, the /api/events delay from a
// submit on one node to the event on another node's stream, and PostgreSQL transactions per second per running job.
import { request } from 'node:http'
import pg from 'pg'
import { startPostgres } from './postgres.js'
import { getJob, isMain, median, pct, report, round, row, sleep, startServer, submit } from './lib.js'

const JOBS = Number(process.env.BENCH_MULTINODE_JOBS || 200)
/** Jobs submitted one at a time, 300 ms apart, for submit→running on nodes with a worker free. */
const SPACED = 20
const DRAIN_LIMIT_MS = 300_000

/** Starts `count` nodes on `url`, one worker each unless told otherwise. */
async function nodes (url, count, env = {}) {
  const out = []
  for (let i = 0; i < count; i++) {
    out.push(await startServer({ DATABASE_URL: url, NODE_ID: `n${i + 1}`, MAX_CONCURRENCY: '1', WARM_SPARE: 'true', ...env }))
  }
  return out
}

async function client (url) {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  return c
}

async function drain (cluster, count) {
  const url = await cluster.createDatabase()
  const servers = await nodes(url, count)
  const db = await client(url)
  try {
    await sleep(1500)
    // Submit→running with a worker free: one job at a time, spread over the nodes.
    const spaced = []
    for (let i = 0; i < SPACED; i++) {
      spaced.push((await submit(servers[i % count].url, { n: 2, steps: 1, seed: 10_000 + i })).body.id)
      await sleep(300)
    }
    await sleep(1000)
    const { rows: first } = await db.query('SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms FROM jobs WHERE id = ANY($1::bigint[]) AND started_at IS NOT NULL', [spaced])
    const idleWaits = first.map((r) => Number(r.ms))
    const t0 = Date.now()
    for (let sent = 0; sent < JOBS; sent += 50) {
      const batch = []
      for (let i = sent; i < Math.min(JOBS, sent + 50); i++) batch.push(submit(servers[i % count].url, { n: 2, steps: 1, seed: i + 1 }))
      await Promise.all(batch)
    }
    let open = Infinity
    while (open > 0 && Date.now() - t0 < DRAIN_LIMIT_MS) {
      await sleep(250)
      const { rows } = await db.query("SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'running')")
      open = Number(rows[0].n)
    }
    const { rows } = await db.query(`SELECT node, extract(epoch FROM started_at - created_at) * 1000 AS wait_ms,
      extract(epoch FROM finished_at) * 1000 AS fin, extract(epoch FROM created_at) * 1000 AS cre FROM jobs WHERE status = 'done'
      AND NOT (id = ANY($1::bigint[]))`, [spaced])
    const waits = rows.map((r) => Number(r.wait_ms))
    const span = Math.max(...rows.map((r) => Number(r.fin))) - Math.min(...rows.map((r) => Number(r.cre)))
    const perNode = {}
    for (const r of rows) perNode[r.node] = (perNode[r.node] ?? 0) + 1
    return { nodes: count, done: rows.length, open, idleP50: median(idleWaits), idleP95: pct(idleWaits, 95), waitP50: median(waits), jobsPerS: rows.length / (span / 1000), perNode }
  } finally {
    await db.end()
    for (const s of servers) await s.stop()
  }
}

/** Kills a node running a job; how long until another node runs it. */
async function takeover (cluster, rounds = 3) {
  const url = await cluster.createDatabase()
  const env = { HEARTBEAT_MS: '500', LEASE_MS: '3000', CHECKPOINT_MS: '1000', WARM_SPARE: 'false' }
  const out = []
  for (let r = 0; r < rounds; r++) {
    const [a] = await nodes(url, 1, { ...env, NODE_ID: `a${r}` })
    const { body } = await submit(a.url, { n: 100, steps: 10_000, seed: r + 1 })
    await waitRunning(a.url, body.id, 1)
    const [b] = await nodes(url, 1, { ...env, NODE_ID: `b${r}` })
    const killed = Date.now()
    process.kill(-a.pid, 'SIGKILL')
    const job = await waitRunning(b.url, body.id, 2)
    out.push(job ? Date.now() - killed : NaN)
    await fetch(`${b.url}/api/jobs/${body.id}/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    await b.stop()
  }
  return out
}

async function waitRunning (url, id, attempts, ms = 60_000) {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const j = await getJob(url, id).catch(() => null)
    if (j && j.status === 'running' && j.attempts === attempts && j.step > 0) return j
    await sleep(20)
  }
  return null
}

/** Submits on node 1, times the event on node 2's stream. */
async function eventDelay (cluster, count = 100) {
  const url = await cluster.createDatabase()
  const [a, b] = await nodes(url, 2)
  const arrived = new Map()
  const req = request(`${b.url}/api/events`, { agent: false })
  req.end()
  const res = await new Promise((resolve) => req.once('response', resolve))
  res.setEncoding('utf8')
  let buffer = ''
  res.on('data', (chunk) => {
    buffer += chunk
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const frame = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = frame.split('\n').find((l) => l.startsWith('data:'))
      if (!frame.includes('event: job') || !data) continue
      const id = JSON.parse(data.slice(5)).id
      if (!arrived.has(id)) arrived.set(id, Date.now())
    }
  })
  try {
    await sleep(1000)
    const sentAt = new Map()
    for (let i = 0; i < count; i++) {
      const t = Date.now()
      const { body } = await submit(a.url, { n: 2, steps: 1, seed: i + 1 })
      sentAt.set(body.id, t)
      await sleep(50)
    }
    await sleep(2000)
    const delays = [...sentAt].map(([id, t]) => (arrived.has(id) ? arrived.get(id) - t : Infinity))
    return { p50: median(delays), p95: pct(delays, 95), missing: delays.filter((d) => d === Infinity).length }
  } finally {
    req.destroy()
    await a.stop()
    await b.stop()
  }
}

/** Commits per second in the job's database with nothing running, then with `jobs` long jobs running. */
async function transactions (cluster, jobs = 2) {
  const url = await cluster.createDatabase()
  const servers = await nodes(url, 2, { MAX_CONCURRENCY: '1', WARM_SPARE: 'false' })
  const db = await client(url)
  const name = new URL(url).pathname.slice(1)
  const commits = async () => Number((await db.query('SELECT xact_commit FROM pg_stat_database WHERE datname = $1', [name])).rows[0].xact_commit)
  const rate = async (ms) => {
    await sleep(1500) // statistics are flushed about once a second
    const c0 = await commits()
    await sleep(ms)
    await sleep(1500)
    return (await commits() - c0) / (ms / 1000)
  }
  try {
    const idle = await rate(8000)
    const ids = []
    for (let i = 0; i < jobs; i++) ids.push((await submit(servers[i % 2].url, { n: 150, steps: 10_000, seed: i + 1 })).body.id)
    for (const id of ids) await waitRunning(servers[0].url, id, 1)
    const busy = await rate(8000)
    for (const id of ids) await fetch(`${servers[0].url}/api/jobs/${id}/cancel`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    return { idle, busy, perJob: (busy - idle) / jobs }
  } finally {
    await db.end()
    for (const s of servers) await s.stop()
  }
}

export async function run () {
  const cluster = await startPostgres()
  try {
    const drains = []
    for (const count of [1, 2, 3]) drains.push(await drain(cluster, count))
    const takeovers = await takeover(cluster)
    const events = await eventDelay(cluster)
    const tx = await transactions(cluster)
    const rows = [
      ...drains.map((d) => row(`${d.nodes} node${d.nodes > 1 ? 's' : ''} (1 worker each, warm spare): submit→running p50 / p95, ${SPACED} jobs 300 ms apart`, 'info',
        `${round(d.idleP50, 0)} / ${round(d.idleP95, 0)} ms`, null)),
      ...drains.map((d) => row(`${d.nodes} node${d.nodes > 1 ? 's' : ''}: drain rate (done ${d.done}, left ${d.open}; per node ${JSON.stringify(d.perNode)})`, 'info',
        `${round(d.jobsPerS, 2)} jobs/s`, null)),
      row('takeover after a node is SIGKILLed (LEASE_MS=3000), 3 rounds', 'info', takeovers.map((ms) => `${round(ms / 1000, 1)} s`).join(', '), null),
      row('/api/events delay, submit on node 1 → event on node 2, p50 / p95', 'p95 ≤ 500 ms',
        `${round(events.p50, 0)} / ${round(events.p95, 0)} ms (missing ${events.missing})`, events.p95 <= 500 && events.missing === 0),
      row('PostgreSQL commits per second: idle 2 nodes / 2 jobs running / per running job', 'info',
        `${round(tx.idle, 1)} / ${round(tx.busy, 1)} / ${round(tx.perJob, 1)}`, null)
    ]
    return report('multinode', { rows, drains, takeovers, events, tx })
  } finally {
    cluster.stop()
  }
}

if (isMain(import.meta.url)) await run()
