/**
 * Several nodes on one PostgreSQL, with real processes (test/fixtures/nodes.ts): a claim race, a whole node killed, a
 * node frozen past its lease. Every test checks what the database holds afterwards (each job's history), not only
 * what the API says.
 */
import type { Test } from 'tap'
import t from 'tap'
import { api, pidRunning, waitFor } from './fixtures/helpers.js'
import { allDone, FAST, history, job, reference, shared as sharedDb } from './fixtures/nodes.js'
import { type PgCluster, startPostgres } from './fixtures/postgres.js'

t.setTimeout(600_000)

let cluster: PgCluster
t.before(async () => { cluster = await startPostgres(t) })
const shared = (t: Test) => sharedDb(t, cluster)

t.test('three nodes race for 60 jobs: each claimed once, done once, spread over the nodes', async (t) => {
  const { db, node } = await shared(t)
  // No takeover belongs in this test: a lease longer than the others' keeps a node starved of CPU for a few seconds
  // by the rest of the suite from having its jobs taken over (correctly, but beside the point here).
  const nodes = await Promise.all(['a', 'b', 'c'].map((id) => node(id, { LEASE_MS: '10000' })))
  const ids: number[] = []
  for (let i = 0; i < 60; i++) {
    const { status, body } = await api(nodes[i % 3].url, '/api/jobs', { body: { n: 4, steps: 40, seed: i + 1 } })
    t.equal(status, 201)
    ids.push(body.id)
  }
  const jobs = await allDone(nodes[1].url, ids, 180_000)
  const seen = await history(db, ids)
  const wrong: string[] = []
  for (const j of jobs) {
    const h = seen.get(j.id) ?? {}
    const ref = reference(j.params)
    if (h.claimed !== 1 || h.done !== 1 || j.attempts !== 1 || !Object.is(j.result.lyapunov, ref.lyapunov)) {
      const { rows } = await db.query<{ kind: string, detail: unknown }>('SELECT kind, detail FROM job_events WHERE job_id = $1 ORDER BY id', [j.id])
      wrong.push(`job ${j.id}: attempts ${j.attempts}, ${JSON.stringify(h)}, answer ${j.result.lyapunov} vs ${ref.lyapunov}; ` +
        rows.map((r) => `${r.kind} ${JSON.stringify(r.detail)}`).join(' | '))
    }
  }
  t.same(wrong, [], 'every job claimed once, done once, first attempt, with the reference answer')
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
