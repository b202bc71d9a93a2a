import t from 'tap'
import { createJobStore } from '../../src/jobs/store.js'
import type { NewJob } from '../../src/jobs/types.js'
import { toJobEvent } from '../../src/jobs/history.js'
import { tmpDb } from '../fixtures/helpers.js'

const job = (over: Partial<NewJob> = {}): NewJob => ({
  type: 'lyapunov',
  name: null,
  params: { n: 4, steps: 60, seed: 1 },
  steps: 60,
  priority: 0,
  timeoutMs: null,
  idempotencyKey: null,
  retryOf: null,
  ...over
})

const state = Buffer.alloc(8)

t.test('a job lost to SIGKILL and resumed tells it in its history', async (t) => {
  const { store } = tmpDb(t)
  const { row } = store.submit(job(), 100)
  const first = store.claimNext('w1', 111)!
  t.ok(store.begin(first, { step: 0, progress: 0, pid: 111 }).ok, 'the worker starts')
  t.ok(store.saveCheckpoint(first, { step: 36, state }, 60).ok, 'checkpoint at step 36')
  t.ok(store.beat(first, { step: 37, progress: 61.7 }).ok, 'beat at step 37')
  t.equal(store.markLost(first, 'worker killed by SIGKILL', 3), 'requeued', 'lost, back to pending')
  const second = store.claimNext('w2', 222)!
  t.ok(store.begin(second, { step: 37, progress: 61.7, pid: 222 }).ok, 'the second worker starts')
  t.ok(store.complete(second, { elapsedMs: 4646, gflops: 0.55 }).ok, 'done')
  const events = store.events(row.id).map((e) => toJobEvent(e, row.steps))
  t.same(events.map((e) => e.kind), ['submitted', 'claimed', 'started', 'checkpoint', 'lost', 'claimed', 'started', 'done'], 'every step, in order')
  t.same(events.map((e) => e.message), [
    'submitted',
    'attempt 1 claimed by worker pid 111',
    'attempt 1 started from scratch in worker pid 111',
    'attempt 1 checkpointed at step 36 of 60',
    'attempt 1 lost at step 37 of 60 — worker killed by SIGKILL; resumes from step 36',
    'attempt 2 claimed by worker pid 222',
    'attempt 2 resumed from step 36 in worker pid 222',
    'done in 4.6 s at 0.55 GF/s'
  ], 'each event in one sentence')
  t.same(events[4].detail, { reason: 'worker killed by SIGKILL', resumesFromStep: 36 }, 'the lost event carries its reason and the resume step')
})

t.test('a fenced-out (stale) worker write adds no history', async (t) => {
  const { store } = tmpDb(t)
  const { row } = store.submit(job(), 100)
  const first = store.claimNext('w1')!
  store.markLost(first, 'no heartbeat for 12 s (worker pid 1 frozen)', 3)
  const second = store.claimNext('w2')!
  const before = store.events(row.id).length
  t.notOk(store.begin(first, { step: 0, progress: 0, pid: 1 }).ok, 'a stale start is refused')
  t.notOk(store.saveCheckpoint(first, { step: 5, state }, 8).ok, 'a stale checkpoint is refused')
  t.notOk(store.complete(first, { x: 1 }).ok, 'a stale complete is refused')
  t.notOk(store.fail(first, 'boom').ok, 'a stale fail is refused')
  t.notOk(store.stopped(first, 'release').ok, 'a stale release is refused')
  t.notOk(store.giveBack(first, 'busy'), 'a stale give-back is refused')
  t.equal(store.markLost(first, 'again', 3), 'gone', 'a stale loss is refused')
  t.equal(store.events(row.id).length, before, 'and none of them added an event')
  t.ok(store.complete(second, { x: 2 }).ok, 'the live attempt completes')
  t.equal(store.events(row.id).at(-1)?.kind, 'done', 'its end is recorded')
})

t.test('a write that fails rolls its event back with it', async (t) => {
  const { store, db } = tmpDb(t)
  const { row } = store.submit(job(), 100)
  const claim = store.claimNext('w1')!
  db.exec("CREATE TRIGGER refuse_done BEFORE UPDATE OF status ON jobs WHEN NEW.status = 'done' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
  const before = store.events(row.id).length
  t.throws(() => store.complete(claim, { x: 1 }), /disk full/, 'the write fails')
  t.equal(store.events(row.id).length, before, 'no done event without the done job')
  t.equal(store.get(row.id)?.status, 'running', 'the job is still running')
  db.exec('DROP TRIGGER refuse_done')
  // The other way round: an event that cannot be written takes the change of the job with it.
  db.exec("CREATE TRIGGER refuse_event BEFORE INSERT ON job_events WHEN NEW.kind = 'done' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
  t.throws(() => store.complete(claim, { x: 1 }), /disk full/, 'the event fails')
  t.equal(store.get(row.id)?.status, 'running', 'so the job did not end: same transaction')
  t.ok(store.loadCheckpoint(row.id) === undefined && store.get(row.id)?.result === null, 'and no result was kept')
})

t.test('stops, releases, timeouts, cancels and exhausted attempts', async (t) => {
  const { store } = tmpDb(t)
  const a = store.submit(job(), 100).row
  const claim = store.claimNext('w1')!
  store.begin(claim, { step: 0, progress: 0, pid: 10 })
  t.ok(store.requestStop(a.id, 'release', 'shutdown'), 'release asked')
  t.ok(store.saveCheckpoint(claim, { step: 7, state }, 12).ok, 'checkpoint before release')
  t.ok(store.stopped(claim, 'release').ok, 'released')
  const claim2 = store.claimNext('w2')!
  store.begin(claim2, { step: 7, progress: 12, pid: 11 })
  store.cancel(a.id)
  t.ok(store.stopped(claim2, 'cancel').ok, 'canceled by the worker')
  const messages = store.events(a.id).map((e) => toJobEvent(e, 60).message)
  t.same(messages.slice(3), [
    'release requested by a server shutdown',
    'attempt 1 checkpointed at step 7 of 60',
    'attempt 1 released at step 7 of 60 (the worker checkpointed and gave it back); resumes from step 7',
    'attempt 1 claimed by a worker',
    'attempt 1 resumed from step 7 in worker pid 11',
    'cancel requested by the API',
    'canceled at step 7 of 60'
  ], 'a release gives its attempt back, and the next attempt resumes from its checkpoint')

  const b = store.submit(job(), 100).row
  t.equal(store.cancel(b.id).status, 'canceled', 'pending job canceled')
  t.same(store.events(b.id).map((e) => toJobEvent(e, 60).message), ['submitted', 'canceled before it ran by the API'], 'canceled before it ran')

  const c = store.submit(job(), 100).row
  for (let i = 1; i <= 2; i++) {
    const attempt = store.claimNext(`c${i}`)!
    store.markLost(attempt, 'worker exited with code 1', 2)
  }
  const last = store.events(c.id).map((e) => toJobEvent(e, 60).message).slice(-2)
  t.same(last, ['attempt 2 lost at step 0 of 60 — worker exited with code 1; no attempt left', 'attempt 2 failed at step 0 of 60 — worker exited with code 1 (attempt 2 of 2)'], 'the last attempt lost fails the job')

  const d = store.submit(job(), 100).row
  const dc = store.claimNext('d')!
  store.requestStop(d.id, 'timeout', 'scheduler')
  t.ok(store.settleStop(dc, 'timeout', 'worker did not stop in time and was killed'), 'settled by the scheduler')
  t.same(store.events(d.id).map((e) => toJobEvent(e, 60).message).slice(-2), ['stop (time limit reached) requested by the scheduler', 'attempt 1 failed at step 0 of 60 — timeout'], 'timeout')
})

t.test('checkpoints: an attempt\'s first, then at most one a minute', async (t) => {
  let now = 1_000_000
  const { db } = tmpDb(t)
  const store = createJobStore(db, () => now)
  const { row } = store.submit(job(), 100)
  const claim = store.claimNext('w')!
  for (let step = 1; step <= 40; step++) {
    now += 5000 // every 5 s for 200 s
    store.saveCheckpoint(claim, { step, state }, step)
  }
  const checkpoints = store.events(row.id).filter((e) => e.kind === 'checkpoint').map((e) => e.step)
  t.same(checkpoints, [1, 13, 25, 37], 'the first, then one a minute')
})

t.test('the history is bounded per job and goes with its job', async (t) => {
  let now = 1_000_000
  const { db } = tmpDb(t)
  const store = createJobStore(db, () => now)
  const { row } = store.submit(job(), 100)
  for (let i = 0; i < 150; i++) { // released at every "restart": 3 events each
    const claim = store.claimNext(`w${i}`)!
    store.begin(claim, { step: i, progress: 0, pid: 1 })
    now += 1000
    store.stopped(claim, 'release')
  }
  const events = store.events(row.id)
  t.equal(events.length, 201, 'the submit and the latest 200 events')
  t.equal(events[0].kind, 'submitted', 'the submit stays')
  t.equal(events.at(-1)?.kind, 'released', 'the latest stays')
  const claim = store.claimNext('last')!
  store.complete(claim, {})
  store.remove(row.id)
  t.equal(db.prepare('SELECT count(*) FROM job_events').pluck().get(), 0, 'deleting the job deletes its history')
  const old = store.submit(job(), 100).row
  store.cancel(old.id)
  now += 86_400_000
  t.equal(store.purgeFinishedBefore(now), 1, 'retention purges the job')
  t.equal(db.prepare('SELECT count(*) FROM job_events').pluck().get(), 0, 'and its history')
})
