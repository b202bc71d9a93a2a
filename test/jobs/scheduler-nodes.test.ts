/**
 * The scheduler as one node of several sharing a database: another node's workers are never looked up in /proc or
 * signalled, whatever their pid names here, and are taken over only from the database once their heartbeats are
 * older than the lease; the sweep of other nodes' jobs runs once per interval across nodes; the node registers,
 * beats and leaves; a pass that fails is reported, not a crash; workers learn the database URL and the lease.
 * Real processes and a real SQLite file; the "other nodes" are rows as their schedulers would have written them.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import t from 'tap'
import { openDb } from '../../src/db.js'
import { buildApp } from '../../src/http/app.js'
import { checkDb } from '../../src/http/ops.js'
import { createScheduler, workerExecArgv, workerNeedsExtraCaCerts } from '../../src/jobs/scheduler.js'
import type { JobStore } from '../../src/jobs/store.js'
import type { NewJob } from '../../src/jobs/types.js'
import { createLogger } from '../../src/log.js'
import { bootId, hasProc, processStartTime } from '../../src/process-identity.js'
import type { AsyncJobStore } from '../../src/store/job-store.js'
import { createSqliteJobStore } from '../../src/store/sqlite.js'
import { npmStartFlags, pidAlive, testConfig, tmpDb, waitFor } from '../fixtures/helpers.js'

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname
const noProc = !hasProc() && 'needs Linux /proc'

const job = (over: Partial<NewJob> = {}): NewJob =>
  ({ type: 'lyapunov', name: null, params: { n: 10, steps: 20, seed: 1 }, steps: 20, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null, ...over })

function scheduler (t: Test, jobs: AsyncJobStore, path: string, nodeId: string, env: Record<string, string> = {}, more: { sweepIntervalMs?: number, workerEntry?: string, jobTypeModules?: Record<string, string> } = {}) {
  const config = testConfig({ DB_PATH: path, MAX_CONCURRENCY: '1', WARM_SPARE: 'false', HEARTBEAT_MS: '100', CHECKPOINT_MS: '200', LEASE_MS: '1000', STOP_GRACE_MS: '500', SHUTDOWN_GRACE_MS: '2000', ...env })
  const s = createScheduler({ store: jobs, config, log: createLogger({ logLevel: 'silent' }), nodeId, ...more })
  t.teardown(() => s.stop())
  return s
}

/**
 * A live process of ours carrying the given worker tokens in its command line, SIGSTOPped: exactly what this node's
 * /proc check would verify as a frozen worker, and kill once its job is taken over.
 */
async function frozenLookalike (t: Test, tokens: string[]): Promise<ChildProcess & { pid: number }> {
  const proc = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)', ...tokens], { stdio: 'ignore' })
  t.teardown(() => { proc.kill('SIGKILL') })
  await once(proc, 'spawn')
  proc.kill('SIGSTOP')
  return proc as ChildProcess & { pid: number }
}

/** A job claimed by `node` for worker `token` (forked with `leaseMs`, when given), whose first heartbeat recorded `pid`
 *  with its real start time. */
function runningOn (store: JobStore, node: string, token: string, pid: number, over: Partial<NewJob> = {}, leaseMs?: number): number {
  const { row } = store.submit(job(over), 100)
  const claim = store.claimNext(token, pid, node, leaseMs)
  if (claim?.id !== row.id) throw new Error('claimed another job')
  store.beat(claim, { step: 0, progress: 0, pid, pidStart: processStartTime(pid) })
  return row.id
}

/** Beats the rows' current attempts every 100 ms, as their node's workers would, until the returned stop. */
function keepBeating (store: JobStore, ids: number[]): { stop: () => number } {
  let last = Date.now()
  const timer = setInterval(() => {
    for (const id of ids) {
      const row = store.get(id)
      if (row?.status === 'running') store.beat(row, { step: 0, progress: 0 })
    }
    last = Date.now()
  }, 100)
  return { stop: () => { clearInterval(timer); return last } }
}

/** keepBeating, stopped at teardown too (a failed test must not beat on a closed database). */
function beating (t: Test, store: JobStore, ids: number[]): { stop: () => number } {
  const beats = keepBeating(store, ids)
  t.teardown(() => { beats.stop() })
  return beats
}

t.test('another node\'s job whose pid is a live process of ours is never signalled, and is taken over only once its heartbeat is older than the lease', { skip: noProc }, async (t) => {
  const { store, jobs, path } = tmpDb(t)
  const tokens = ['other-lost', 'other-cancel', 'other-timeout']
  const lookalike = await frozenLookalike(t, tokens)
  const lost = runningOn(store, 'node-b', tokens[0], lookalike.pid)
  const canceled = runningOn(store, 'node-b', tokens[1], lookalike.pid)
  store.cancel(canceled)
  const timed = runningOn(store, 'node-b', tokens[2], lookalike.pid, { timeoutMs: 1 })
  const beats = beating(t, store, [lost, canceled, timed])

  // One attempt: the takeover fails the job, so its row keeps the reason (a requeued one would run here at once).
  const s = scheduler(t, jobs, path, 'node-a', { MAX_ATTEMPTS: '1' }, { sweepIntervalMs: 100 })
  await s.start()
  // Ours: MAX_CONCURRENCY=1 counts only this node's workers, so it runs beside node-b's three.
  const { row: mine } = store.submit(job(), 100)
  s.wake()
  const claimed = await waitFor(() => { const r = store.get(mine.id); return r?.status !== 'pending' && r }, 10_000, 'our own job to be claimed beside the other node\'s')
  t.equal(claimed.node, 'node-a', 'our claim records our node')
  // Well past the lease, the stop grace and the time limit, while node-b's workers beat.
  await sleep(2500)
  for (const id of [lost, canceled, timed]) {
    const row = store.get(id)!
    t.equal(row.status, 'running', `job ${id} of node-b still running while it beats`)
    t.equal(row.attempts, 1, `job ${id}: no takeover`)
  }
  t.equal(store.get(canceled)?.stop_request, 'cancel', 'its cancel is left to its node')

  const lastBeat = beats.stop()
  const taken = await waitFor(() => { const r = store.get(lost); return r && r.status !== 'running' && r }, 10_000, 'the silent job to be taken over')
  const waited = taken.updated_at - lastBeat
  t.ok(waited >= 1000, `taken over ${waited} ms after its last heartbeat, not before the lease`)
  t.equal(taken.status, 'failed', 'its attempt is over (failed: MAX_ATTEMPTS=1)')
  t.match(taken.error, /no heartbeat for \d+ s \(worker of node node-b\)/, `why: ${taken.error}`)
  await waitFor(() => store.get(canceled)?.status === 'canceled', 5000, 'the cancel settled once its worker is silent')
  const timedRow = await waitFor(() => { const r = store.get(timed); return r?.status === 'failed' && r }, 5000, 'the time limit applied once its worker is silent')
  t.equal(timedRow.error, 'timeout', 'failed with "timeout"')

  await sleep(500)
  t.ok(pidAlive(lookalike.pid), `the process ${lookalike.pid} its rows named is alive`)
  t.equal(lookalike.signalCode, null, 'and was sent no signal')
  t.equal(s.stats.killed, 0, 'nothing was killed')
  await s.stop()
  t.ok(pidAlive(lookalike.pid), 'a graceful stop does not signal it either')
})

t.test('this node\'s jobs from an earlier boot are decided from the database alone', { skip: noProc }, async (t) => {
  const { store, jobs, path } = tmpDb(t)
  // This node's previous server ran on another boot of the machine: the pids its workers recorded mean nothing now.
  await jobs.registerNode({ node_id: 'node-a', boot_id: 'an-earlier-boot', pid: 1, host: 'here' })
  const lookalike = await frozenLookalike(t, ['earlier-boot-worker'])
  const id = runningOn(store, 'node-a', 'earlier-boot-worker', lookalike.pid)
  const s = scheduler(t, jobs, path, 'node-a', { MAX_ATTEMPTS: '1' }, { sweepIntervalMs: 100 })
  await s.start()
  const failed = await waitFor(() => { const r = store.get(id); return r?.status === 'failed' && r }, 10_000, 'the job to be taken over')
  t.match(failed.error, /no heartbeat for \d+ s \(worker of node node-a\)/, `from its heartbeat: ${failed.error}`)
  t.ok(pidAlive(lookalike.pid), 'the process its pid names now is not signalled')
  t.equal(s.stats.killed, 0, 'nothing was killed')
  const node = (await jobs.nodes()).find((n) => n.node_id === 'node-a')
  t.equal(node?.boot_id, bootId(), 'the node is registered again with this boot')
})

t.test('another node\'s job is waited for as long as that node\'s own lease, not this node\'s shorter one', { skip: noProc }, async (t) => {
  const { store, jobs, path } = tmpDb(t)
  // node-b runs with LEASE_MS=4000 (its workers fence themselves on it) and is gone: its row beats no more.
  await jobs.registerNode({ node_id: 'node-b', boot_id: 'boot-b', pid: 1, host: 'b', lease_ms: 4000 })
  const lookalike = await frozenLookalike(t, ['long-lease-worker'])
  const id = runningOn(store, 'node-b', 'long-lease-worker', lookalike.pid)
  const beats = beating(t, store, [id])
  const s = scheduler(t, jobs, path, 'node-a', { MAX_ATTEMPTS: '1' }, { sweepIntervalMs: 100 })
  await s.start()
  const lastBeat = beats.stop()
  // node-a's own lease is 1000 ms: 2.5 s of silence is past it, well inside node-b's.
  await sleep(2500)
  const row = store.get(id)!
  t.equal(row.status, 'running', `still running after ${Date.now() - lastBeat} ms of silence`)
  t.equal(row.attempts, 1, 'not taken over')
  const taken = await waitFor(() => { const r = store.get(id); return r && r.status !== 'running' && r }, 15_000, 'the job to be taken over')
  const waited = taken.updated_at - lastBeat
  t.ok(waited >= 4000, `taken over ${waited} ms after its last heartbeat: past node-b's lease of 4000 ms`)
  t.match(taken.error, /no heartbeat for \d+ s \(worker of node node-b\)/, `why: ${taken.error}`)
  const nodes = await jobs.nodes()
  t.same(nodes.map((n) => [n.node_id, n.lease_ms]).sort(), [['node-a', 1000], ['node-b', 4000]], 'each node is listed with its lease')
})

t.test('a job is waited for as long as the lease its worker was forked with, after its node restarted with a shorter one', { skip: noProc }, async (t) => {
  const { store, jobs, path } = tmpDb(t)
  // node-a and node-b ran with LEASE_MS=4000 and were restarted with 1000 (node-b's row says so now; node-a is this
  // scheduler), while a worker of each, forked before the restart, still fences itself on 4000.
  await jobs.registerNode({ node_id: 'node-b', boot_id: 'boot-b', pid: 1, host: 'b', lease_ms: 1000 })
  const lookalike = await frozenLookalike(t, ['old-lease-a', 'old-lease-b'])
  const ids = [runningOn(store, 'node-a', 'old-lease-a', lookalike.pid, {}, 4000), runningOn(store, 'node-b', 'old-lease-b', lookalike.pid, {}, 4000)]
  const beats = beating(t, store, ids)
  const s = scheduler(t, jobs, path, 'node-a', { MAX_ATTEMPTS: '1' }, { sweepIntervalMs: 100 })
  await s.start()
  const lastBeat = beats.stop()
  // 2.5 s of silence: past every node's lease now, well inside the one these workers fence themselves on.
  await sleep(2500)
  for (const id of ids) {
    const row = store.get(id)!
    t.equal(row.status, 'running', `job ${id} still running after ${Date.now() - lastBeat} ms of silence`)
    t.equal(row.attempts, 1, `job ${id}: not taken over`)
  }
  const taken = await Promise.all(ids.map((id) => waitFor(() => { const r = store.get(id); return r && r.status !== 'running' && r }, 15_000, `job ${id} to be taken over`)))
  for (const row of taken) {
    const waited = row.updated_at - lastBeat
    t.ok(waited >= 4000, `job ${row.id} (node ${row.node}) taken over ${waited} ms after its last heartbeat: past its lease of 4000 ms`)
    t.match(row.error, /no heartbeat for \d+ s/, `why: ${row.error}`)
  }
})

t.test('a lease recorded for an earlier attempt is not the current one\'s: a job re-claimed by an older server is judged by its node\'s lease', { skip: noProc }, async (t) => {
  const { store, jobs, path, db } = tmpDb(t)
  // node-old runs a server older than the per-attempt lease (LEASE_MS=1000, in its node row) and is gone. The job's
  // first attempt was claimed by a node with LEASE_MS=4000; node-old's claim moved the lease on without a lease_ms.
  await jobs.registerNode({ node_id: 'node-old', boot_id: 'boot-old', pid: 1, host: 'old', lease_ms: 1000 })
  const lookalike = await frozenLookalike(t, ['first-attempt', 'old-server-worker'])
  const id = runningOn(store, 'node-b', 'first-attempt', lookalike.pid, {}, 4000)
  db.prepare("UPDATE jobs SET lease = lease + 1, attempts = attempts + 1, worker = 'old-server-worker', node = 'node-old', pid = NULL WHERE id = ?").run(id)
  const claimedByOld = store.get(id)!
  t.match(claimedByOld, { lease: 2, lease_ms: 4000, lease_ms_lease: 1, node: 'node-old' }, 'the row keeps the first attempt\'s lease_ms')
  const beats = beating(t, store, [id])
  const s = scheduler(t, jobs, path, 'node-a', { MAX_ATTEMPTS: '1' }, { sweepIntervalMs: 100 })
  await s.start()
  await sleep(1300) // node-old's own row falls silent past its lease: the job's node is gone
  const lastBeat = beats.stop()
  const taken = await waitFor(() => { const r = store.get(id); return r && r.status !== 'running' && r }, 15_000, 'the job to be taken over')
  const waited = taken.updated_at - lastBeat
  t.ok(waited >= 1000 && waited < 3500, `taken over ${waited} ms after its last heartbeat: node-old's lease of 1000 ms, not the 4000 ms of an earlier attempt`)
  t.match(taken.error, /no heartbeat for \d+ s \(worker of node node-old\)/, `why: ${taken.error}`)
})

t.test('two schedulers on one database sweep once per interval between them, and take a silent job over once', async (t) => {
  const { store, jobs, path, db } = tmpDb(t)
  const second = openDb(path)
  t.teardown(() => second.close())
  const otherJobs = createSqliteJobStore(second)
  // A job of a third node that is gone: no heartbeat since long before these schedulers start.
  const { row } = store.submit(job(), 100)
  store.claimNext('gone-worker', 999_999, 'node-c')
  db.prepare('UPDATE jobs SET heartbeat_at = heartbeat_at - 60000 WHERE id = ?').run(row.id)

  const interval = 400
  // A long lease: the requeued job's next worker, slow to boot on a loaded machine, is not taken for lost as well.
  const a = scheduler(t, jobs, path, 'node-a', { LEASE_MS: '20000' }, { sweepIntervalMs: interval })
  const b = scheduler(t, otherJobs, path, 'node-b', { LEASE_MS: '20000' }, { sweepIntervalMs: interval })
  const started = Date.now()
  await Promise.all([a.start(), b.start()])
  await sleep(4000)
  const elapsed = Date.now() - started
  const sweeps = a.stats.sweeps + b.stats.sweeps
  // Each scheduler alone tries every interval: without the shared slot they would sweep about twice as often.
  t.ok(sweeps <= Math.floor(elapsed / interval) + 1, `${sweeps} sweeps (${a.stats.sweeps} + ${b.stats.sweeps}) in ${elapsed} ms: at most one per ${interval} ms`)
  t.ok(sweeps >= 3, `${sweeps} sweeps happened`)
  t.equal(a.stats.lost + b.stats.lost, 1, 'the silent job was taken over once')
  const after = store.get(row.id)!
  t.not(after.worker, 'gone-worker', 'its attempt is over')
  // From the history: the requeued job may already have run to its end (which clears its error) on a quiet machine.
  const lost = store.events(row.id).filter((e) => e.kind === 'lost')
  t.equal(lost.length, 1, 'one loss in its history')
  t.match(JSON.parse(lost[0]?.detail ?? '{}').reason ?? '', /worker of node node-c/, 'taken over from its heartbeat')
})

t.test('the node registers with its boot, beats, and leaves at stop', async (t) => {
  const { jobs, path } = tmpDb(t)
  const s = scheduler(t, jobs, path, 'node-a')
  await s.start()
  const first = (await jobs.nodes()).find((n) => n.node_id === 'node-a')
  t.ok(first, 'registered')
  t.equal(first?.pid, process.pid, 'with its pid')
  t.equal(first?.boot_id, bootId() ?? 'unknown', 'and the machine\'s boot id')
  await waitFor(async () => ((await jobs.nodes()).find((n) => n.node_id === 'node-a')?.heartbeat_at ?? 0) > first!.heartbeat_at, 5000, 'a node heartbeat')
  t.pass('it beats')
  await s.stop()
  t.same((await jobs.nodes()).map((n) => n.node_id), [], 'gone from the nodes table after a clean stop')
})

t.test('a pass that fails (database unreachable) is reported by health() and /readyz, not a crash, and the next one recovers', async (t) => {
  const { store, jobs, path, db } = tmpDb(t)
  // A long lease: a worker slow to boot on a loaded machine is not taken for lost.
  const s = scheduler(t, jobs, path, 'node-a', { LEASE_MS: '20000' })
  await s.start()
  await waitFor(() => s.lastTickAt() !== null, 5000, 'a first pass')
  const real = jobs.runningWithAges
  jobs.runningWithAges = async () => { throw new Error('connect ECONNREFUSED 127.0.0.1:5432') }
  const health = await waitFor(() => { const h = s.health(); return !h.ok && h }, 5000, 'health to say not ok')
  t.match(health.reason, /scheduler passes fail: connect ECONNREFUSED 127\.0\.0\.1:5432 \(\d+ in a row/, health.reason)
  const app = await buildApp({ config: testConfig({ DB_PATH: path }), store: jobs, scheduler: s, dbReady: () => checkDb(db) })
  t.teardown(() => app.close())
  const ready = await app.inject({ url: '/readyz' })
  t.equal(ready.statusCode, 503, '/readyz: 503')
  t.match(ready.json(), { status: 'unavailable', reason: /scheduler passes fail: connect ECONNREFUSED/ }, 'with the reason')
  const failures = s.stats.tickFailures
  await sleep(600)
  t.ok(s.stats.tickFailures > failures, 'passes go on being tried')
  t.ok(Date.now() - (s.lastTickAt() ?? 0) < 1000, 'a failed pass still counts as a pass (readiness says why through health)')
  jobs.runningWithAges = real
  await waitFor(() => s.health().ok, 5000, 'health to recover')
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 200, '/readyz: 200 again')
  const { row } = store.submit(job(), 100)
  s.wake()
  await waitFor(() => store.get(row.id)?.status !== 'pending', 10_000, 'a job to be claimed after the outage')
  t.pass('jobs are claimed again')
})

/** Sets NODE_EXTRA_CA_CERTS in this process (a server's environment, which its workers inherit) for one test. */
function extraCaCerts (t: Test): string {
  const before = process.env.NODE_EXTRA_CA_CERTS
  const file = '/nonexistent/extra-ca.pem'
  process.env.NODE_EXTRA_CA_CERTS = file
  t.teardown(() => { if (before === undefined) delete process.env.NODE_EXTRA_CA_CERTS; else process.env.NODE_EXTRA_CA_CERTS = before })
  return file
}

t.test('workers are forked with the database URL and the lease', async (t) => {
  const caFile = extraCaCerts(t)
  const { jobs, path } = tmpDb(t)
  const s = scheduler(t, jobs, path, 'node-a', { WARM_SPARE: 'true', LEASE_MS: '1500', DATABASE_URL: 'postgres://u:p@db.invalid:5432/nonstop' }, { workerEntry: join(FIXTURES, 'env-report-worker.mjs') })
  await s.start()
  const dir = dirname(path)
  const file = await waitFor(() => { const [pid] = s.childPids(); return pid !== undefined && readdirEnv(dir) }, 10_000, 'a spare to report its environment')
  const env = JSON.parse(readFileSync(file, 'utf8'))
  t.equal(env.NONSTOP_DATABASE_URL, 'postgres://u:p@db.invalid:5432/nonstop', 'NONSTOP_DATABASE_URL from DATABASE_URL')
  t.equal(env.NONSTOP_LEASE_MS, '1500', 'NONSTOP_LEASE_MS from LEASE_MS')
  t.equal(env.NONSTOP_DB_PATH, path, 'the SQLite path as before')
  t.equal(env.NODE_EXTRA_CA_CERTS, caFile, 'NODE_EXTRA_CA_CERTS kept: the worker may reach PostgreSQL over TLS')
})

t.test('a worker inherits NODE_EXTRA_CA_CERTS only when it may open a TLS connection', async (t) => {
  t.test('on SQLite with only the built-in job types it is dropped', async (t) => {
    const caFile = extraCaCerts(t)
    // tap preloads its TypeScript loader (execArgv and NODE_OPTIONS), which workers would inherit: a server started
    // by `npm start` has neither.
    const { execArgv, env: { NODE_OPTIONS: options } } = process
    process.execArgv = execArgv.filter((arg) => !arg.startsWith('--import'))
    delete process.env.NODE_OPTIONS
    t.teardown(() => {
      process.execArgv = execArgv
      if (options !== undefined) process.env.NODE_OPTIONS = options
    })
    const { jobs, path } = tmpDb(t)
    const s = scheduler(t, jobs, path, 'node-a', { WARM_SPARE: 'true' }, { workerEntry: join(FIXTURES, 'env-report-worker.mjs') })
    await s.start()
    const file = await waitFor(() => readdirEnv(dirname(path)), 10_000, 'a spare of built-in types to report')
    const env = JSON.parse(readFileSync(file, 'utf8'))
    t.equal(env.NODE_EXTRA_CA_CERTS, null, 'no TLS possible: the variable is dropped')
    t.equal(env.NONSTOP_DB_PATH, path, 'the rest of the environment is there')
    t.equal(process.env.NODE_EXTRA_CA_CERTS, caFile, "the server's own environment is unchanged")
  })

  t.test('with a user job type it is kept', async (t) => {
    const caFile = extraCaCerts(t)
    const { jobs, path } = tmpDb(t)
    const s = scheduler(t, jobs, path, 'node-b', { WARM_SPARE: 'true' }, { workerEntry: join(FIXTURES, 'env-report-worker.mjs'), jobTypeModules: { fetcher: '/srv/types/fetcher.mjs' } })
    await s.start()
    const file = await waitFor(() => readdirEnv(dirname(path)), 10_000, 'a spare with user job types to report')
    t.equal(JSON.parse(readFileSync(file, 'utf8')).NODE_EXTRA_CA_CERTS, caFile, 'its code may open TLS connections')
  })

  t.test('the decision', async (t) => {
    const sqlite = { databaseUrl: undefined }
    t.equal(workerNeedsExtraCaCerts(sqlite, {}, {}, []), false, 'SQLite, built-in types, nothing preloaded')
    t.equal(workerNeedsExtraCaCerts({ databaseUrl: 'postgres://db.example/nonstop' }, {}, {}, []), true, 'PostgreSQL')
    t.equal(workerNeedsExtraCaCerts(sqlite, { mine: '/types/mine.mjs' }, {}, []), true, 'a user job type')
    t.equal(workerNeedsExtraCaCerts(sqlite, {}, {}, ['--require', '/opt/apm/agent.cjs']), true, '--require on the command line')
    t.equal(workerNeedsExtraCaCerts(sqlite, {}, {}, ['--import=/opt/otel/register.mjs']), true, '--import= on the command line')
    t.equal(workerNeedsExtraCaCerts(sqlite, {}, { NODE_OPTIONS: '--max-old-space-size=512 -r /opt/apm/agent.cjs' }, []), true, '-r in NODE_OPTIONS')
    t.equal(workerNeedsExtraCaCerts(sqlite, {}, { NODE_OPTIONS: '--experimental-loader /opt/hooks.mjs' }, []), true, 'a loader in NODE_OPTIONS')
    t.equal(workerNeedsExtraCaCerts(sqlite, {}, { NODE_OPTIONS: '"--import=file:///opt/otel/register.mjs"' }, []), true, 'a quoted --import in NODE_OPTIONS')
    t.equal(workerNeedsExtraCaCerts(sqlite, {}, {}, process.execArgv), true, "tap's own loader, preloaded into this test")
    t.equal(workerNeedsExtraCaCerts(sqlite, {}, { NODE_OPTIONS: '--max-old-space-size=512' }, ['--expose-gc', '--max-semi-space-size=4']), false, 'other flags preload nothing')
  })
})

t.test("a worker is forked without the server's memory flags (npm start's) and with the rest of its flags", async (t) => {
  // Every flag npm start gives a server on any Node version (Node 24's are a superset of Node 20's).
  const serverFlags = [...new Set([...npmStartFlags('20.11.0'), ...npmStartFlags('24.0.0')])]
  t.ok(serverFlags.includes('--optimize-for-size') && serverFlags.includes('--max-old-space-size=128'), `npm start's flags read: ${serverFlags.join(' ')}`)
  const { execArgv } = process
  process.execArgv = [...execArgv, ...serverFlags, '--trace-warnings']
  t.teardown(() => { process.execArgv = execArgv })
  const { jobs, path } = tmpDb(t)
  const s = scheduler(t, jobs, path, 'node-a', { WARM_SPARE: 'true' }, { workerEntry: join(FIXTURES, 'env-report-worker.mjs') })
  await s.start()
  const file = await waitFor(() => readdirEnv(dirname(path)), 10_000, 'a spare to report its flags')
  const forked = JSON.parse(readFileSync(file, 'utf8')).execArgv as string[]
  for (const flag of serverFlags) t.notOk(forked.includes(flag), `${flag} is the server's, not the worker's`)
  t.ok(forked.includes('--max-semi-space-size=4') && forked.includes('--expose-gc') && forked.includes('--single-threaded'), "the worker's own flags")
  t.ok(forked.includes('--trace-warnings'), 'any other flag of the server is inherited')
  t.same(workerExecArgv(['--max_old_space_size=64', '--no_maglev', '--nomaglev', '--optimize_for_size', '--no-maglev-inlining', '--max-old-space-size-percentage=50']), ['--no-maglev-inlining', '--max-old-space-size-percentage=50', '--max-semi-space-size=4', '--expose-gc', '--single-threaded'], 'the other spellings V8 accepts too, and only whole flags')
})

t.test('on SQLite workers get no database URL, not even one the server inherited', async (t) => {
  process.env.NONSTOP_DATABASE_URL = 'postgres://inherited.invalid/none'
  t.teardown(() => { delete process.env.NONSTOP_DATABASE_URL })
  const { jobs: sqliteJobs, path: sqlitePath } = tmpDb(t)
  const plain = scheduler(t, sqliteJobs, sqlitePath, 'node-b', { WARM_SPARE: 'true' }, { workerEntry: join(FIXTURES, 'env-report-worker.mjs') })
  await plain.start()
  const plainFile = await waitFor(() => readdirEnv(dirname(sqlitePath)), 10_000, 'the SQLite spare to report')
  t.equal(JSON.parse(readFileSync(plainFile, 'utf8')).NONSTOP_DATABASE_URL, null, 'on SQLite no database URL, not even an inherited one')
})

/** The env-<token>.json a fixture worker wrote in `dir`, if any yet. */
function readdirEnv (dir: string): string | undefined {
  const name = readdirSync(dir).find((f) => f.startsWith('env-') && f.endsWith('.json'))
  return name === undefined ? undefined : join(dir, name)
}
