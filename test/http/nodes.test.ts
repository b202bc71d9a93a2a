import t from 'tap'
import { buildApp } from '../../src/http/app.js'
import { testConfig, tmpDb } from '../fixtures/helpers.js'

/** The value of one sample line of the Prometheus text, or undefined when the line is absent. */
function sample (text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}

const newJob = (seed: number) =>
  ({ type: 'lyapunov', name: null, params: { n: 2, steps: 1, seed }, steps: 1, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null })

t.test('GET /api/nodes lists the nodes table: host, pid, start, heartbeat age and running jobs, this server marked', async (t) => {
  const { jobs, db } = tmpDb(t)
  const app = await buildApp({ config: testConfig(), store: jobs, scheduler: { wake () {} }, nodes: { self: 'here:3000' } })
  t.teardown(() => app.close())

  const empty = await app.inject({ url: '/api/nodes' })
  t.equal(empty.statusCode, 200, '200 with no node')
  t.same(empty.json(), { nodes: [] }, 'an empty list')

  await jobs.registerNode({ node_id: 'here:3000', boot_id: 'b1', pid: 4242, host: 'here' })
  await jobs.registerNode({ node_id: 'there:3000', boot_id: 'b2', pid: 77, host: 'there' })
  // The other node last beat 90 s ago; this one runs two jobs.
  db.prepare('UPDATE nodes SET heartbeat_at = heartbeat_at - 90000, started_at = started_at - 100000 WHERE node_id = ?').run('there:3000')
  for (const seed of [1, 2, 3]) await jobs.submit(newJob(seed), 100)
  t.ok(await jobs.claimNext('w1', 1, 'here:3000'), 'a job claimed by this node')
  t.ok(await jobs.claimNext('w2', 2, 'here:3000'), 'another')
  t.ok(await jobs.claimNext('w3', 3, 'there:3000'), 'one by the other node')

  const res = await app.inject({ url: '/api/nodes' })
  t.equal(res.statusCode, 200, '200')
  const { nodes } = res.json()
  t.same(nodes.map((n: { nodeId: string }) => n.nodeId), ['here:3000', 'there:3000'], 'newest heartbeat first')
  t.match(nodes[0], { nodeId: 'here:3000', host: 'here', pid: 4242, running: 2, self: true }, 'this server, with its running jobs')
  t.match(nodes[1], { nodeId: 'there:3000', host: 'there', pid: 77, running: 1, self: false }, 'the other node')
  t.ok(nodes[0].heartbeatAgeMs >= 0 && nodes[0].heartbeatAgeMs < 5000, `a fresh heartbeat (${nodes[0].heartbeatAgeMs} ms)`)
  t.ok(nodes[1].heartbeatAgeMs >= 90_000 && nodes[1].heartbeatAgeMs < 95_000, `a silent node shows its silence (${nodes[1].heartbeatAgeMs} ms)`)
  for (const n of nodes) {
    t.equal(new Date(n.startedAt).toISOString(), n.startedAt, `${n.nodeId}: startedAt is an ISO date`)
    t.equal(new Date(n.heartbeatAt).toISOString(), n.heartbeatAt, `${n.nodeId}: heartbeatAt is an ISO date`)
    t.notOk('boot_id' in n || 'bootId' in n, `${n.nodeId}: the boot id stays inside`)
  }
  // Registered a few ms apart, then the other node's start moved 100 s back.
  t.ok(Date.parse(nodes[0].startedAt) - Date.parse(nodes[1].startedAt) >= 99_000, 'start times as stored')

  const metrics = (await app.inject({ url: '/metrics' })).body
  t.equal(sample(metrics, 'nonstop_nodes'), 2, '/metrics: two nodes')
  t.equal(sample(metrics, 'nonstop_node_running_jobs{node="here:3000"}'), 2, '/metrics: jobs running on this node')
  t.equal(sample(metrics, 'nonstop_node_running_jobs{node="there:3000"}'), 1, '/metrics: on the other')
  t.ok((sample(metrics, 'nonstop_node_heartbeat_age_seconds{node="there:3000"}') ?? 0) >= 90, '/metrics: the silent node\'s heartbeat age')

  await jobs.leaveNode('there:3000', 77)
  const after = (await app.inject({ url: '/metrics' })).body
  t.equal(sample(after, 'nonstop_nodes'), 1, 'a node that left is no longer counted')
  t.equal(sample(after, 'nonstop_node_running_jobs{node="there:3000"}'), undefined, 'nor listed')
  t.same((await app.inject({ url: '/api/nodes' })).json().nodes.map((n: { nodeId: string }) => n.nodeId), ['here:3000'], 'nor in GET /api/nodes')
})

t.test('GET /api/nodes takes the list it is given, and a failing list is a 500 in Fastify\'s shape', async (t) => {
  const { jobs } = tmpDb(t)
  let fail = false
  const list = async () => {
    if (fail) throw new Error('database unreachable')
    return [{ node_id: 'n1', boot_id: 'b', pid: 1, host: 'h', started_at: 0, heartbeat_at: 1000, silent_ms: 1500.7, running: 0, lease_ms: 2500 }]
  }
  const app = await buildApp({ config: testConfig(), store: jobs, scheduler: { wake () {} }, nodes: { list } })
  t.teardown(() => app.close())
  t.same((await app.inject({ url: '/api/nodes' })).json(), {
    nodes: [{ nodeId: 'n1', host: 'h', pid: 1, startedAt: '1970-01-01T00:00:00.000Z', heartbeatAt: '1970-01-01T00:00:01.000Z', heartbeatAgeMs: 1501, running: 0, leaseMs: 2500, self: false }]
  }, 'the rows given, in the API\'s form')
  fail = true
  const res = await app.inject({ url: '/api/nodes' })
  t.equal(res.statusCode, 500, '500')
  t.same(res.json(), { statusCode: 500, error: 'Internal Server Error', message: 'internal error; see the server log' }, 'the cause stays in the log')
})
