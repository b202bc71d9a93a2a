import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import t from 'tap'
import { latestSchemaVersion, openDb } from '../../src/db.js'
import { buildApp } from '../../src/http/app.js'
import type { EventsTuning } from '../../src/http/events.js'
import { createJobStore } from '../../src/jobs/store.js'
import type { AsyncJobStore } from '../../src/store/job-store.js'
import { api, startServer, testConfig, tmpDb, waitFor } from '../fixtures/helpers.js'
import { openStream } from '../fixtures/sse.js'

/** The app over a real database file, listening on a loopback port; no scheduler runs, the test plays the worker. */
async function setup (t: Test, events: Partial<EventsTuning> = {}, wrap: (store: AsyncJobStore) => AsyncJobStore = (s) => s) {
  const { store, jobs, path, db } = tmpDb(t)
  const options = { config: testConfig(), store: wrap(jobs), scheduler: { wake () {} }, events }
  const app = await buildApp(options)
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  // A second connection, as a worker process has.
  const workerDb = openDb(path)
  t.teardown(() => workerDb.close())
  return { app, store, db, url: `http://127.0.0.1:${port}`, workerDb, worker: createJobStore(workerDb) }
}

const p95 = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * 0.95))]

t.test('a job submitted here and changed by a worker connection streams every state, through a real socket', async (t) => {
  const { url, worker, workerDb } = await setup(t)
  const stream = await openStream(t, url)
  t.equal(stream.status, 200, '200')
  t.match(stream.headers.get('content-type'), /^text\/event-stream/, 'event-stream content type')
  t.match(stream.headers.get('content-security-policy'), /script-src 'self'/, 'security headers kept on the stream')

  const submitted = await api(url, '/api/jobs', { body: { n: 4, steps: 3, name: 'sse' } })
  t.equal(submitted.status, 201, 'submitted')
  const id = submitted.body.id
  const pending = await waitFor(() => stream.jobs().find((j) => j.id === id && j.status === 'pending'), 1000, 'the pending event')
  t.equal(pending.name, 'sse', 'the event carries the job JSON')
  t.equal(Number(pending.eventId), pending.version, 'the event id is the job\'s version')

  const written = Date.now()
  const claimed = worker.claimNext('w1')
  t.equal(claimed?.id, id, 'the worker connection claimed it')
  const running = await waitFor(() => stream.jobs().find((j) => j.id === id && j.status === 'running'), 1000, 'the running event')
  t.ok(running.at - written < 1000, `write → event within 1 s (${running.at - written} ms)`)

  // Heartbeats, as a worker writes them: measure write → event latency.
  const latencies: number[] = []
  for (let step = 1; step <= 20; step++) {
    const at = Date.now()
    t.ok(worker.beat(claimed!, { step, progress: step }).ok, `beat ${step} written`)
    const seen = await waitFor(() => stream.jobs().find((j) => j.id === id && j.step === step), 1000, `step ${step}`)
    latencies.push(seen.at - at)
    await sleep(Math.random() * 30)
  }
  t.ok(p95(latencies) < 1000, 'heartbeats arrive within a second')
  t.comment(`write → event latency over ${latencies.length} writes: p50 ${[...latencies].sort((a, b) => a - b)[10]} ms, p95 ${p95(latencies)} ms, max ${Math.max(...latencies)} ms`)

  t.ok(worker.complete(claimed!, { lyapunov: 1, theory: 1, trace: 0, elapsedMs: 5, gflops: 0.1 }).ok, 'completed')
  const done = await waitFor(() => stream.jobs().find((j) => j.id === id && j.status === 'done'), 1000, 'the done event')
  t.same(done.result, { lyapunov: 1, theory: 1, trace: 0, elapsedMs: 5, gflops: 0.1 }, 'the result is in the event')

  const ids = stream.frames.filter((f) => f.id !== undefined).map((f) => Number(f.id))
  t.same(ids, [...ids].sort((a, b) => a - b), 'event ids never go backwards')
  t.equal(new Set(ids).size, ids.length, 'no change is sent twice')
  t.equal(workerDb.pragma('user_version', { simple: true }), latestSchemaVersion(), 'the worker connection is a real second connection')
})

const newJob = (name: string | null, seed: number) =>
  ({ type: 'lyapunov', name, params: { n: 2, steps: 9, seed }, steps: 9, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null })

t.test('changes arrive in commit order whatever their updated_at: same ms, or a clock behind', async (t) => {
  const { url, store, workerDb } = await setup(t)
  const stream = await openStream(t, url)
  const { row } = store.submit(newJob(null, 1), 100)
  const first = await waitFor(() => stream.jobs().find((j) => j.id === row.id), 1000, 'the first event')
  // A second change in the same ms as the one already sent.
  workerDb.prepare('UPDATE jobs SET step = 1, updated_at = ? WHERE id = ?').run(Date.parse(first.updatedAt), row.id)
  const second = await waitFor(() => stream.jobs().find((j) => j.id === row.id && j.step === 1), 1000, 'the same-ms change')
  t.equal(second.updatedAt, first.updatedAt, 'both changes carry the same updatedAt')
  // A newer job, then a commit stamped before it (a heartbeat that took its time before waiting for the lock).
  await sleep(20)
  const other = store.submit(newJob('newer', 2), 100)
  await waitFor(() => stream.jobs().find((j) => j.id === other.row.id), 1000, 'the newer row')
  workerDb.prepare('UPDATE jobs SET step = 2, updated_at = ? WHERE id = ?').run(Date.parse(first.updatedAt) + 5, row.id)
  const late = await waitFor(() => stream.jobs().find((j) => j.id === row.id && j.step === 2), 2000, 'the late-stamped commit')
  t.ok(Date.parse(late.updatedAt) < other.row.updated_at, 'its updatedAt is older than a row sent before it')
  t.ok(late.version > second.version, 'its version is newer, which is what the page compares')
})

t.test('Last-Event-ID resumes with the changes after that id, not the whole table', async (t) => {
  const { url } = await setup(t)
  const old = await api(url, '/api/jobs', { body: { n: 2, steps: 2, name: 'before' } })
  await sleep(20)
  const first = await openStream(t, url)
  const b = await api(url, '/api/jobs', { body: { n: 2, steps: 2, name: 'seen' } })
  const seen = await waitFor(() => first.frames.find((f) => f.event === 'job' && JSON.parse(f.data as string).id === b.body.id), 1000, 'job b')
  first.close()
  await sleep(20)

  // While no one listens: b is canceled, c is submitted.
  t.equal((await api(url, `/api/jobs/${b.body.id}/cancel`, { method: 'POST' })).status, 200, 'b canceled')
  const c = await api(url, '/api/jobs', { body: { n: 2, steps: 2, name: 'missed' } })

  const resumed = await openStream(t, url, { 'last-event-id': seen.id as string })
  await waitFor(() => resumed.jobs().some((j) => j.id === c.body.id), 1000, 'job c replayed')
  await waitFor(() => resumed.jobs().some((j) => j.id === b.body.id && j.status === 'canceled'), 1000, 'b canceled replayed')
  t.notOk(resumed.jobs().some((j) => j.id === old.body.id), 'a job unchanged since before the id is not replayed')

  const fresh = await openStream(t, url)
  await sleep(300)
  t.same(fresh.jobs(), [], 'without Last-Event-ID nothing is replayed (the page fetches the list itself)')
})

t.test('a delete through the API is announced as event: deleted', async (t) => {
  const { url } = await setup(t)
  const stream = await openStream(t, url)
  const job = await api(url, '/api/jobs', { body: { n: 2, steps: 2 } })
  await api(url, `/api/jobs/${job.body.id}/cancel`, { method: 'POST' })
  t.equal((await api(url, `/api/jobs/${job.body.id}`, { method: 'DELETE' })).status, 204, 'deleted')
  const frame = await waitFor(() => stream.frames.find((f) => f.event === 'deleted'), 1000, 'the deleted event')
  t.same(JSON.parse(frame.data as string), { id: job.body.id }, 'it names the job')
  t.equal((await api(url, '/api/jobs/999/cancel', { method: 'POST' })).status, 404, 'a failed request')
  await sleep(100)
  t.equal(stream.frames.filter((f) => f.event === 'deleted').length, 1, 'only successful deletes are announced')
})

t.test('the change counter never goes back: after the newest jobs are deleted and the rest purged, a new job streams pending → done', async (t) => {
  const { url, store, worker } = await setup(t)
  const stream = await openStream(t, url)
  const ids = [1, 2, 3, 4].map((seed) => store.submit(newJob(`old ${seed}`, seed), 100).row.id)
  for (const id of ids) store.cancel(id)
  await waitFor(() => stream.jobs().filter((j) => j.status === 'canceled').length === 4, 2000, 'the four cancels')
  // The two newest through the API, then a retention purge of everything finished.
  for (const id of ids.slice(2)) t.equal((await api(url, `/api/jobs/${id}`, { method: 'DELETE' })).status, 204, `job ${id} deleted`)
  t.equal(store.purgeFinishedBefore(Date.now() + 1000), 2, 'the purge deleted the other two')
  t.equal(store.list({ limit: 10 }).jobs.length, 0, 'the table is empty')

  const fresh = await api(url, '/api/jobs', { body: { n: 2, steps: 2, name: 'after the purge' } })
  t.equal(fresh.status, 201, 'a new job submitted')
  // The stream sends a row's latest state, so each write waits for its event before the next one.
  const mine = () => stream.jobs().filter((j) => j.name === 'after the purge')
  await waitFor(() => mine().some((j) => j.status === 'pending'), 2000, 'the pending event')
  const claimed = worker.claimNext('w1')
  t.equal(claimed?.id, fresh.body.id, 'claimed by the worker connection')
  await waitFor(() => mine().some((j) => j.status === 'running'), 2000, 'the running event')
  t.ok(worker.beat(claimed!, { step: 1, progress: 50 }).ok, 'a heartbeat')
  await waitFor(() => mine().some((j) => j.step === 1), 2000, 'the heartbeat event')
  t.ok(worker.complete(claimed!, { lyapunov: 1 }).ok, 'completed')
  await waitFor(() => mine().some((j) => j.status === 'done'), 2000, 'the done event')
  t.same(mine().map((j) => j.status), ['pending', 'running', 'running', 'done'], 'every change of the new job arrived, in order')
  const deleted = stream.frames.filter((f) => f.event === 'deleted').map((f) => JSON.parse(f.data as string).id)
  t.same([...deleted].sort(), [...ids].sort(), 'a deleted event for each job, from the API and from the purge')
  const numbers = stream.frames.filter((f) => f.id !== undefined).map((f) => Number(f.id))
  t.same(numbers, [...numbers].sort((a, b) => a - b), 'event ids only ever increase')
  t.equal(new Set(numbers).size, numbers.length, 'and are never reused')
})

t.test('a client resuming with Last-Event-ID after a delete or a purge gets event: deleted', async (t) => {
  const { url, store } = await setup(t)
  const a = store.submit(newJob('a', 1), 100).row.id
  const b = store.submit(newJob('b', 2), 100).row.id
  store.cancel(a)
  store.cancel(b)
  const first = await openStream(t, url)
  const c = await api(url, '/api/jobs', { body: { n: 2, steps: 2 } })
  const last = await waitFor(() => first.frames.find((f) => f.event === 'job' && JSON.parse(f.data as string).id === c.body.id), 1000, 'job c')
  first.close()
  await sleep(50)

  // While no one listens: b deleted through the API, a purged.
  t.equal((await api(url, `/api/jobs/${b}`, { method: 'DELETE' })).status, 204, 'b deleted')
  t.equal(store.purgeFinishedBefore(Date.now() + 1000), 1, 'a purged')
  const resumed = await openStream(t, url, { 'last-event-id': last.id as string })
  await waitFor(() => resumed.frames.filter((f) => f.event === 'deleted').length === 2, 1000, 'two deleted events replayed')
  const deleted = resumed.frames.filter((f) => f.event === 'deleted')
  t.same(deleted.map((f) => JSON.parse(f.data as string).id), [b, a], 'both deletions, in the order they happened')
  t.ok(deleted.every((f) => Number(f.id) > Number(last.id)), 'each with its own number after the resumed id')
  t.notOk(resumed.frames.some((f) => f.event === 'reset'), 'no reset needed')
})

t.test('tombstones are pruned; a resume from before the oldest one kept gets reset', async (t) => {
  const { url, store, db } = await setup(t)
  db.prepare('UPDATE change_counter SET keep_tombstones = 5').run()
  const ids = [1, 2, 3, 4, 5, 6].map((seed) => store.submit(newJob(null, seed), 100).row.id)
  for (const id of ids) store.cancel(id)
  const before = store.latestSeq()
  t.equal(store.purgeFinishedBefore(Date.now() + 1000), 6, 'six deleted')
  const kept = db.prepare('SELECT count(*) FROM job_tombstones').pluck().get() as number
  t.ok(kept <= 5, `tombstones kept within the limit (${kept})`)
  t.equal(store.resumableAfter(), store.latestSeq() - 5, 'resumable from the oldest change still covered')

  const stale = await openStream(t, url, { 'last-event-id': String(before) })
  await waitFor(() => stale.frames.some((f) => f.event === 'reset'), 1000, 'reset for a resume older than the tombstones')
  t.notOk(stale.frames.some((f) => f.event === 'deleted'), 'and no partial list of deletions')
  const future = await openStream(t, url, { 'last-event-id': String(store.latestSeq() + 1000) })
  await waitFor(() => future.frames.some((f) => f.event === 'reset'), 1000, 'reset for an id this database never gave')
})

t.test('streams are bounded in total and per address, with a clear 429 / 503', async (t) => {
  const { url } = await setup(t, { maxClients: 3, maxClientsPerAddress: 2 })
  const a = await openStream(t, url)
  const b = await openStream(t, url)
  t.equal(a.status, 200, 'first stream')
  t.equal(b.status, 200, 'second stream')
  const third = await api(url, '/api/events')
  t.equal(third.status, 429, 'a third from the same address is refused')
  t.match(third.body, { statusCode: 429, error: 'Too Many Requests', message: /too many event streams from this address/ }, 'clear message')
  t.ok(third.headers.get('retry-after'), 'with Retry-After')
  // Another loopback address counts separately, until the total is reached.
  const c = await openStream(t, url, {}, '127.0.0.2')
  t.equal(c.status, 200, 'a stream from another address')
  const fourth = await openStream(t, url, {}, '127.0.0.3')
  t.equal(fourth.status, 503, 'beyond the total: 503')
  const body = await waitFor(() => fourth.ended() && fourth.frames.length === 0 ? 'ended' : false, 2000, 'the refusal')
  t.ok(body, 'the refusal is a plain reply, not a stream')
  a.close()
  await waitFor(async () => (await openStream(t, url)).status === 200, 2000, 'a slot freed by a close is usable again')
})

t.test('the database is polled only while a client is connected, and a ping keeps the stream alive', async (t) => {
  let calls = 0
  const { url } = await setup(t, { pollMs: 20, heartbeatMs: 100 }, (store) => ({
    ...store,
    changesAfter: (after: string | null, limit?: number) => { calls++; return store.changesAfter(after, limit) }
  }))
  await sleep(150)
  t.equal(calls, 0, 'no client, no polling')
  const a = await openStream(t, url)
  const b = await openStream(t, url)
  await waitFor(() => a.frames.some((f) => f.comment === 'ping'), 1000, 'a ping')
  t.ok(calls > 3, `polls while connected (${calls})`)
  a.close()
  await sleep(100)
  const withOne = calls
  await sleep(100)
  t.ok(calls > withOne, 'still polling for the remaining client')
  b.close()
  await sleep(100)
  const after = calls
  await sleep(200)
  t.equal(calls, after, 'polling stops with the last client')
})

t.test('a malformed or foreign Last-Event-ID gets reset, never a 500', async (t) => {
  const { url, store } = await setup(t)
  store.submit(newJob('x', 1), 100)
  for (const id of ['abc', '-1', '1.5', '12abc', '9'.repeat(40), 'x'.repeat(500), '1e3']) {
    const stream = await openStream(t, url, { 'last-event-id': id })
    t.equal(stream.status, 200, `${JSON.stringify(id.slice(0, 20))}: 200`)
    await waitFor(() => stream.frames.some((f) => f.event === 'reset'), 5000, `reset for ${JSON.stringify(id.slice(0, 20))}`)
    stream.close()
  }
  const after = await openStream(t, url)
  const job = await api(url, '/api/jobs', { body: { n: 2, steps: 2, name: 'still live' } })
  await waitFor(() => after.jobs().some((j) => j.id === job.body.id), 5000, 'a live change after all that')
})

t.test('event ids are opaque: a store whose ids are not numbers streams, resumes and resets the same way', async (t) => {
  // PostgreSQL's ids look like "<xid>.<id>"; this store hands out SQLite's numbers dressed the same way.
  const dress = (id: string): string => `${Number(id) + 700}.${id}`
  const undress = (id: string): string | undefined => {
    const m = /^(\d+)\.(\d+)$/.exec(id)
    return m && Number(m[1]) === Number(m[2]) + 700 ? m[2] : undefined
  }
  const { url, store } = await setup(t, {}, (inner) => ({
    ...inner,
    changesAfter: async (after, limit) => {
      const from = after === null ? null : undress(after)
      if (after !== null && from === undefined) throw new Error(`not an id of this store: ${after}`)
      return (await inner.changesAfter(from ?? null, limit)).map((c) => ({ ...c, eventId: dress(c.eventId) }))
    },
    feedHead: async () => dress(await inner.feedHead()),
    canResume: async (id, max) => {
      const from = undress(id)
      return from !== undefined && inner.canResume(from, max)
    }
  }))
  const stream = await openStream(t, url)
  const a = store.submit(newJob('a', 1), 100).row
  const seen = await waitFor(() => stream.frames.find((f) => f.event === 'job' && JSON.parse(f.data as string).id === a.id), 5000, 'job a')
  t.match(seen.id, /^\d+\.\d+$/, `the store's own id is sent as it is (${seen.id})`)
  stream.close()

  store.cancel(a.id)
  const b = store.submit(newJob('b', 2), 100).row
  const resumed = await openStream(t, url, { 'last-event-id': seen.id as string })
  await waitFor(() => resumed.jobs().some((j) => j.id === b.id), 5000, 'b replayed')
  await waitFor(() => resumed.jobs().some((j) => j.id === a.id && j.status === 'canceled'), 5000, 'a canceled replayed')
  t.notOk(resumed.frames.some((f) => f.event === 'reset'), 'no reset')
  const c = store.submit(newJob('c', 3), 100).row
  await waitFor(() => resumed.jobs().some((j) => j.id === c.id), 5000, 'then live changes')
  const ids = resumed.frames.filter((f) => f.id !== undefined).map((f) => f.id)
  t.equal(new Set(ids).size, ids.length, 'no change sent twice')

  const foreign = await openStream(t, url, { 'last-event-id': '17' })
  await waitFor(() => foreign.frames.some((f) => f.event === 'reset'), 5000, 'an id this store never gave: reset')
})

t.test('the poll loop never overlaps itself, however slow the store', async (t) => {
  let inFlight = 0
  let most = 0
  let calls = 0
  const { url, store } = await setup(t, { pollMs: 5 }, (inner) => ({
    ...inner,
    changesAfter: async (after, limit) => {
      inFlight++
      calls++
      most = Math.max(most, inFlight)
      try {
        await sleep(40)
        return await inner.changesAfter(after, limit)
      } finally {
        inFlight--
      }
    }
  }))
  const streams = [await openStream(t, url), await openStream(t, url), await openStream(t, url)]
  const { row } = store.submit(newJob('slow', 1), 100)
  for (const s of streams) await waitFor(() => s.jobs().some((j) => j.id === row.id), 5000, 'the change on every stream')
  await sleep(300)
  t.ok(calls >= 3, `polled (${calls} reads)`)
  t.equal(most, 1, 'one read at a time: streams at one position share it, and a pass waits for the last')
})

t.test('a change feed that cannot be read when a stream opens is a 503 with Retry-After', async (t) => {
  let down = true
  const { url } = await setup(t, {}, (inner) => ({
    ...inner,
    feedHead: async () => {
      if (down) throw new Error('connection refused')
      return inner.feedHead()
    }
  }))
  const res = await api(url, '/api/events')
  t.equal(res.status, 503, '503')
  t.match(res.body, { statusCode: 503, error: 'Service Unavailable', message: /change feed cannot be read/ }, 'says why')
  t.ok(res.headers.get('retry-after'), 'with Retry-After')
  down = false
  const stream = await openStream(t, url)
  t.equal(stream.status, 200, 'once the database answers, streams open again')
  // The refused stream gave its place back.
  t.equal((await openStream(t, url)).status, 200, 'and the refused one did not keep a place')
})

t.test('close() ends open streams instead of waiting for them', async (t) => {
  const { app, url } = await setup(t)
  const stream = await openStream(t, url)
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 2000, 'closed promptly')
  await waitFor(() => stream.ended(), 2000, 'the stream to end')
  t.pass('the client saw the end of the stream')
})

t.test('end to end: the built server streams a real job from submit to done', async (t) => {
  const server = await startServer(t, {})
  const stream = await openStream(t, server.url)
  const job = await api(server.url, '/api/jobs', { body: { n: 20, steps: 30, name: 'e2e' } })
  t.equal(job.status, 201, 'submitted')
  const done = await waitFor(() => stream.jobs().find((j) => j.id === job.body.id && j.status === 'done'), 30_000, 'the done event')
  t.type(done.result.lyapunov, 'number', 'the result arrived over the stream')
  const states = new Set(stream.jobs().filter((j) => j.id === job.body.id).map((j) => j.status))
  t.ok(states.has('running') || states.has('pending'), 'an earlier state arrived before done')
  stream.close()
  t.equal(await server.stop(), 0, 'the server exits cleanly with a stream having been open')
})
