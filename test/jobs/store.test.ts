import t from 'tap'
import type { NewJob } from '../../src/jobs/types.js'
import { openDb } from '../../src/db.js'
import { countSql, createJobStore, NEXT_PENDING_SQL } from '../../src/jobs/store.js'
import { openStores } from '../../src/store/open.js'
import { tmpDb } from '../fixtures/helpers.js'

const job = (over: Partial<NewJob> = {}): NewJob => ({
  type: 'lyapunov',
  name: null,
  params: { n: 4, steps: 3, seed: 1 },
  steps: 3,
  priority: 0,
  timeoutMs: null,
  idempotencyKey: null,
  retryOf: null,
  ...over
})

t.test('claims go by priority, then age, and only once', async (t) => {
  const { store } = tmpDb(t)
  const a = store.submit(job(), 100).row
  const b = store.submit(job({ priority: 5 }), 100).row
  const c = store.submit(job(), 100).row
  t.equal(store.claimNext('w1')?.id, b.id, 'highest priority first')
  t.equal(store.claimNext('w2')?.id, a.id, 'then the oldest')
  const third = store.claimNext('w3')
  t.equal(third?.id, c.id, 'then the next')
  t.equal(third?.lease, 1, 'first claim has lease 1')
  t.equal(third?.attempts, 1, 'and counts one attempt')
  t.equal(store.claimNext('w4'), undefined, 'nothing left to claim')
  t.equal(store.assigned('w3')?.id, c.id, 'a worker finds its job by token')
})

t.test('worker writes are fenced on the lease', async (t) => {
  const { store } = tmpDb(t)
  const { row } = store.submit(job(), 100)
  const first = store.claimNext('w1')!
  t.same(store.beat(first, { step: 1, progress: 33, pid: 123 }), { ok: true, value: null }, 'owner can beat')
  t.same(store.beat({ ...first, worker: 'w9' }, { step: 1, progress: 33 }), { ok: false }, 'another token on the same lease cannot')
  t.equal(store.markLost(first, 'test', 3), 'requeued', 'lost → pending')
  const second = store.claimNext('w2')!
  t.equal(second.lease, first.lease + 1, 'new claim, new lease')
  t.equal(second.attempts, 2, 'second attempt')
  t.same(store.beat(first, { step: 2, progress: 66 }), { ok: false }, 'the old lease cannot beat')
  t.same(store.saveCheckpoint(first, { step: 2, state: Buffer.alloc(8) }, 66), { ok: false }, 'nor checkpoint')
  t.same(store.complete(first, { x: 1 }), { ok: false }, 'nor complete')
  t.same(store.fail(first, 'x'), { ok: false }, 'nor fail')
  t.equal(store.loadCheckpoint(row.id), undefined, 'no checkpoint was written by the old lease')
  t.equal(store.get(row.id)?.step, 1, 'the old lease moved nothing (step is still the one it wrote while it held the lease)')
  t.same(store.complete(second, { x: 2 }), { ok: true, value: undefined }, 'the live lease completes')
  t.same(JSON.parse(store.get(row.id)!.result!), { x: 2 }, 'its result is stored')
})

t.test('checkpoints are saved with progress and deleted when the job ends', async (t) => {
  const { store, db } = tmpDb(t)
  const { row } = store.submit(job(), 100)
  const claim = store.claimNext('w')!
  const state = Buffer.from(new Float64Array([1, 2, 3]).buffer)
  t.ok(store.saveCheckpoint(claim, { step: 2, state }, 66.67).ok, 'saved')
  t.equal(store.get(row.id)?.step, 2, 'progress saved with it')
  t.same(store.loadCheckpoint(row.id)?.state, state, 'state round-trips')
  store.complete(claim, {})
  t.equal(db.prepare('SELECT count(*) FROM checkpoints').pluck().get(), 0, 'checkpoint gone once done')
})

t.test('lost attempts are retried until MAX_ATTEMPTS, then the job fails with the reason', async (t) => {
  const { store } = tmpDb(t)
  const { row } = store.submit(job(), 100)
  for (let i = 1; i <= 2; i++) {
    const claim = store.claimNext('w')!
    t.equal(store.markLost(claim, `crash ${i}`, 3), 'requeued', `attempt ${i} requeued`)
  }
  const last = store.claimNext('w')!
  t.equal(store.markLost(last, 'worker killed by SIGKILL', 3), 'failed', 'third loss fails the job')
  const failed = store.get(row.id)!
  t.equal(failed.status, 'failed', 'failed')
  t.match(failed.error, /worker killed by SIGKILL \(attempt 3 of 3\)/, 'reason kept')
  t.equal(store.markLost(last, 'again', 3), 'gone', 'a finished job is not touched again')
})

t.test('cancel, release and timeout', async (t) => {
  const { store } = tmpDb(t)
  const pending = store.submit(job(), 100).row
  t.equal(store.cancel(pending.id).status, 'canceled', 'a pending job is canceled at once')
  t.throws(() => store.cancel(pending.id), { statusCode: 409 }, 'canceling again is a conflict')
  t.throws(() => store.cancel(999), { statusCode: 404 }, 'unknown job is 404')

  const running = store.submit(job(), 100).row
  const claim = store.claimNext('w')!
  const asked = store.cancel(running.id)
  t.equal(asked.status, 'running', 'a running job keeps running until its worker stops')
  t.equal(asked.stop_request, 'cancel', 'with a cancel request')
  t.same(store.beat(claim, { step: 1, progress: 1 }), { ok: true, value: 'cancel' }, 'the worker reads it with its heartbeat')
  t.ok(store.stopped(claim, 'cancel').ok, 'worker settles it')
  t.equal(store.get(running.id)?.status, 'canceled', 'canceled')

  const released = store.submit(job(), 100).row
  const c2 = store.claimNext('w')!
  t.equal(c2.attempts, 1, 'one attempt charged at claim')
  store.requestStop(released.id, 'release')
  t.ok(store.stopped(c2, 'release').ok, 'released')
  const after = store.get(released.id)!
  t.equal(after.status, 'pending', 'back to pending')
  t.equal(after.attempts, 0, 'a release does not use up an attempt')

  const slow = store.submit(job({ timeoutMs: 1 }), 100).row
  store.claimNext('w') // the released job, claimed again
  const c3 = store.claimNext('w')!
  t.equal(c3.id, slow.id, 'the timed job runs')
  await new Promise((resolve) => setTimeout(resolve, 5))
  t.ok(store.requestStop(slow.id, 'timeout'), 'timeout flagged')
  t.equal(store.get(slow.id)?.stop_request, 'timeout', 'the worker will read it with its heartbeat')
  t.ok(store.stopped(c3, 'timeout').ok, 'worker settles it')
  const timedOut = store.get(slow.id)!
  t.equal(timedOut.status, 'failed', 'timeout → failed')
  t.equal(timedOut.error, 'timeout', 'reason "timeout"')
})

t.test('delete and retry only apply to finished jobs', async (t) => {
  const { store } = tmpDb(t)
  const a = store.submit(job({ name: 'a', priority: 3 }), 100).row
  t.throws(() => store.remove(a.id), { statusCode: 409 }, 'a pending job cannot be deleted')
  t.throws(() => store.retry(a.id, 100), { statusCode: 409 }, 'a pending job cannot be retried')
  store.cancel(a.id)
  const retried = store.retry(a.id, 100)
  t.equal(retried.retry_of, a.id, 'retry points back')
  t.equal(retried.params, a.params, 'same params, same seed')
  t.equal(retried.priority, 3, 'same priority')
  store.remove(a.id)
  t.equal(store.get(a.id), undefined, 'deleted')
  t.throws(() => store.remove(a.id), { statusCode: 404 }, 'deleting again is 404')
})

t.test('back-pressure and idempotency', async (t) => {
  const { store } = tmpDb(t)
  store.submit(job(), 2)
  store.submit(job(), 2)
  t.throws(() => store.submit(job(), 2), { statusCode: 429, headers: { 'retry-after': '5' } }, 'third pending job refused')
  t.equal(store.counts().pending, 2, 'nothing half-created')
  const keyed = store.submit(job({ idempotencyKey: 'k1' }), 100)
  const again = store.submit(job({ idempotencyKey: 'k1' }), 100)
  t.equal(keyed.created, true, 'first submit creates')
  t.equal(again.created, false, 'repeat does not')
  t.equal(again.row.id, keyed.row.id, 'same job returned')
  const drawn = store.submit(job({ idempotencyKey: 'k1', params: { n: 4, steps: 3, seed: 77 } }), 100, { anySeed: true })
  t.equal(drawn.row.id, keyed.row.id, 'a seed the client did not choose is not compared')
  const differing: Array<[Partial<NewJob>, RegExp]> = [
    [{ params: { n: 9, steps: 3, seed: 1 } }, /\(n differs\)/],
    [{ params: { n: 4, steps: 9, seed: 1 } }, /\(steps differs\)/],
    [{ params: { n: 4, steps: 3, seed: 2 } }, /\(seed differs\)/],
    [{ name: 'other' }, /\(name differs\)/],
    [{ priority: 4 }, /\(priority differs\)/],
    [{ timeoutMs: 5000 }, /\(timeoutSeconds differs\)/]
  ]
  for (const [over, reason] of differing) {
    t.throws(() => store.submit(job({ idempotencyKey: 'k1', ...over }), 100), { statusCode: 409, message: /Idempotency-Key "k1" was already used for job \d+ with a different request/ }, `${JSON.stringify(over)}: 409 naming the key`)
    t.throws(() => store.submit(job({ idempotencyKey: 'k1', ...over }), 100), { message: reason }, `${JSON.stringify(over)}: names the field`)
  }
  t.equal(store.counts().pending, 3, 'no job created by a conflicting repeat')
})

t.test('pages are newest first and cover everything exactly once', async (t) => {
  const { store } = tmpDb(t)
  const ids: number[] = []
  for (let i = 0; i < 23; i++) ids.push(store.submit(job(), 1000).row.id)
  for (const id of ids.slice(0, 5)) store.cancel(id)
  const seen: number[] = []
  let cursor: number | undefined
  do {
    const page = store.list({ limit: 10, cursor })
    seen.push(...page.jobs.map((j) => j.id))
    cursor = page.nextCursor ?? undefined
  } while (cursor)
  t.same(seen, [...ids].reverse(), 'all ids, newest first, no duplicates')
  const canceled = store.list({ status: 'canceled', limit: 3 })
  t.same(canceled.jobs.map((j) => j.id), ids.slice(2, 5).reverse(), 'status filter')
  t.equal(canceled.nextCursor, ids[2], 'cursor to the next page')
  t.same(store.counts(), { pending: 18, running: 0, done: 0, failed: 0, canceled: 5 }, 'counts')
})

t.test('every write takes the next change number, in commit order, whichever connection makes it', async (t) => {
  const { store, path } = tmpDb(t)
  const other = createJobStore(openDb(path))
  const a = store.submit(job(), 100).row
  const b = other.submit(job(), 100).row
  t.ok(b.seq > a.seq && a.seq > 0, `inserts are numbered (${a.seq}, ${b.seq})`)
  const claim = other.claimNext('w')!
  other.beat(claim, { step: 1, progress: 50 })
  store.cancel(b.id)
  const changes = store.changedAfter(b.seq)
  t.same(changes.map((r) => [r.id, r.status]), [[a.id, 'running'], [b.id, 'canceled']], 'changes after b, in commit order')
  t.equal(store.latestSeq(), changes[1].seq, 'latestSeq is the last change')
  t.same(store.changedAfter(store.latestSeq()), [], 'nothing after the latest')
  const seqs = [store.get(a.id)!.seq, store.get(b.id)!.seq]
  t.equal(new Set(seqs).size, 2, 'no two rows share a number')
})

t.test('job ids are never reused, even after the newest job is deleted', async (t) => {
  const { store } = tmpDb(t)
  store.submit(job(), 100)
  const newest = store.submit(job(), 100).row
  store.cancel(newest.id)
  store.remove(newest.id)
  const next = store.submit(job(), 100).row
  t.ok(next.id > newest.id, `the next job gets ${next.id}, not the deleted ${newest.id}`)
})

t.test('a frozen worker writes nothing into a new job that got its job id and lease number', async (t) => {
  const { store, db } = tmpDb(t)
  const { row } = store.submit(job(), 100)
  const frozen = store.claimNext('frozen-worker')!
  t.equal(frozen.lease, 1, 'the frozen worker holds lease 1')
  t.equal(store.markLost(frozen, 'no heartbeat', 3), 'requeued', 'taken over')
  const live = store.claimNext('live-worker')!
  t.ok(store.complete(live, { x: 1 }).ok, 'the live attempt finished it')
  store.remove(row.id)
  // Ids are no longer reused; force it, as a database from before AUTOINCREMENT or a hand-made row could.
  db.prepare('INSERT INTO jobs (id, type, params, steps, created_at, updated_at) VALUES (?, \'lyapunov\', ?, 3, 0, 0)')
    .run(row.id, JSON.stringify({ n: 4, steps: 3, seed: 2 }))
  const reborn = store.claimNext('new-worker')!
  t.equal(reborn.id, frozen.id, 'the new job has the frozen worker\'s job id')
  t.equal(reborn.lease, frozen.lease, 'and the same lease number')
  const before = JSON.stringify(store.get(row.id))
  t.same(store.beat(frozen, { step: 2, progress: 66, pid: 1 }), { ok: false }, 'its beat is refused')
  t.same(store.saveCheckpoint(frozen, { step: 2, state: Buffer.alloc(8) }, 66), { ok: false }, 'its checkpoint too')
  t.same(store.complete(frozen, { forged: true }), { ok: false }, 'its result too')
  t.same(store.fail(frozen, 'forged'), { ok: false }, 'its failure too')
  t.same(store.stopped(frozen, 'cancel'), { ok: false }, 'its stop too')
  t.equal(store.markLost(frozen, 'forged', 3), 'gone', 'and the server side of its attempt')
  t.equal(store.giveBack(frozen, 'forged'), false, 'nothing given back on its behalf')
  t.equal(JSON.stringify(store.get(row.id)), before, 'the new job is untouched')
  t.equal(store.loadCheckpoint(row.id), undefined, 'no checkpoint written')
  t.ok(store.beat(reborn, { step: 1, progress: 33 }).ok, 'the new job\'s own worker still writes')
})

t.test('canceling a pending job deletes the checkpoint a released attempt left', async (t) => {
  const { store } = tmpDb(t)
  const { row } = store.submit(job(), 100)
  const claim = store.claimNext('w')!
  t.ok(store.saveCheckpoint(claim, { step: 2, state: Buffer.alloc(64) }, 66).ok, 'checkpoint saved')
  store.requestStop(row.id, 'release')
  t.ok(store.stopped(claim, 'release').ok, 'released back to pending')
  t.ok(store.loadCheckpoint(row.id), 'the checkpoint stays for the next attempt')
  t.equal(store.cancel(row.id).status, 'canceled', 'canceled while pending')
  t.equal(store.loadCheckpoint(row.id), undefined, 'its checkpoint is gone')
})

t.test('a database-busy exit gives the job back without using an attempt', async (t) => {
  const { store } = tmpDb(t)
  const { row } = store.submit(job(), 100)
  const claim = store.claimNext('w')!
  t.equal(claim.attempts, 1, 'claim charged one attempt')
  t.ok(store.giveBack(claim, 'database busy'), 'given back')
  const after = store.get(row.id)!
  t.equal(after.status, 'pending', 'pending again')
  t.equal(after.attempts, 0, 'the attempt is given back')
  t.equal(after.error, 'database busy', 'the reason is kept')
  t.notOk(store.giveBack(claim, 'again'), 'a second give-back of the same attempt does nothing')
})

t.test('a claim reads the queue index in its order, and a count by name reads an index, never every row', async (t) => {
  const { db, store } = tmpDb(t)
  // A queue of 3 000 pending jobs over 3 priorities, and as many finished ones, so the planner has rows to weigh.
  const insert = db.prepare(`INSERT INTO jobs (type, name, params, status, step, steps, progress, attempts, lease, priority, created_at, updated_at)
    VALUES ('lyapunov', @name, '{}', @status, 0, 3, 0, 0, 0, @priority, @at, @at)`)
  db.transaction(() => {
    for (let i = 0; i < 6000; i++) insert.run({ name: i % 50 < 2 ? `Nightly ${i}` : `run ${i}`, status: i % 2 ? 'pending' : 'done', priority: i % 3, at: 1_000_000 + i })
  })()
  const plan = (sql: string, binds: Record<string, unknown> = {}): string =>
    (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(binds) as Array<{ detail: string }>).map((r) => r.detail).join(' | ')
  const claimPlan = plan(NEXT_PENDING_SQL)
  t.match(claimPlan, /jobs_queue/, `the claim reads jobs_queue (${claimPlan})`)
  t.notMatch(claimPlan, /TEMP B-TREE/, 'and sorts nothing')
  const countPlan = plan(countSql({ name: 'nightly' }), { status: 'done', fName: '%nightly%' })
  t.match(countPlan, /COVERING INDEX jobs_status_name/, `a count by name reads (status, name) alone (${countPlan})`)
  // The order the index gives is the claim order: priority first, then the oldest.
  const expected = db.prepare("SELECT min(id) AS id FROM jobs WHERE status = 'pending' AND priority = 2").get() as { id: number }
  t.equal(store.claimNext('w1')?.id, expected.id, 'the oldest job of the highest priority is claimed first')
  t.same(store.counts({ name: 'nIGHTLY' }), { pending: 120, running: 0, done: 120, failed: 0, canceled: 0 }, 'counts by name, whatever the case')
})

t.test('a server store checks every statement when it is made; a worker store prepares each at its first use', async (t) => {
  // A database without the schema: every statement of the store names a table that is not there.
  const path = `${t.testdir()}/empty.db`
  t.throws(() => createJobStore(openDb(path)), /no such table/, 'eager (the default): made, it prepares and checks all')
  const lazy = createJobStore(openDb(path), Date.now, { eager: false })
  t.pass('lazy: made without preparing anything')
  t.throws(() => lazy.get(1), /no such table/, 'a statement is prepared, and checked, when first used')

  const worker = await openStores({ dbPath: path, databaseUrl: undefined, pgPoolMax: 1 }, { role: 'worker' })
  t.teardown(() => worker.close())
  await t.rejects(worker.ready(), /schema is version 0/, "a worker's stores open, and its schema check says what is wrong")
  const { store } = tmpDb(t)
  t.ok(store.submit(job(), 100).created, 'a store on a migrated database works either way')
})
