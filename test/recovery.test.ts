/**
 * Crash recovery with real processes: the built server (dist/server.js, as `npm start` runs it less its memory
 * flags), its forked workers and one SQLite file. Every test kills something, restarts, and checks that the job
 * ends with the answer an uninterrupted run gives, bit for bit, and that the database is intact.
 */
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import t from 'tap'
import { openDb } from '../src/db.js'
import { LyapunovRun } from '../src/jobs/lyapunov.js'
import { api, pidRunning, startServer, waitFor } from './fixtures/helpers.js'

const FAST = { HEARTBEAT_MS: '200', CHECKPOINT_MS: '500', LEASE_MS: '3000', STOP_GRACE_MS: '2000', MAX_CONCURRENCY: '2' }

function reference (params: { n: number, steps: number, seed: number }) {
  const run = new LyapunovRun(params)
  while (!run.finished) run.advance()
  return run.result()
}

function integrity (t: Test, dbPath: string): void {
  const db = openDb(dbPath)
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok', 'PRAGMA integrity_check = ok')
  db.close()
}

/** A database path and log file shared by the successive servers of one test. */
function place (t: Test) {
  const dir = t.testdir({})
  return { DB_PATH: join(dir, 'jobs.db'), LOG_FILE: join(dir, 'nonstop.log') }
}

async function job (url: string, id: number) {
  return (await api(url, `/api/jobs/${id}`)).body
}

/** Waits until the job is done and returns it. */
async function finished (url: string, id: number, ms: number) {
  return waitFor(async () => { const j = await job(url, id); return j.status === 'done' && j }, ms, `job ${id} done`)
}

t.test('server killed with SIGKILL, workers alive → restart → the job finishes in its original worker', async (t) => {
  const env = { ...FAST, ...place(t) }
  const params = { n: 70, steps: 10_000, seed: 7 } // long enough to outlast a restart, also on an idle machine
  const first = await startServer(t, env)
  const { body: created } = await api(first.url, '/api/jobs', { body: params })
  const pid = await waitFor(async () => { const j = await job(first.url, created.id); return j.step > 0 && j.pid }, 30_000, 'progress')
  first.proc.kill('SIGKILL')
  await waitFor(() => first.proc.exitCode !== null || first.proc.signalCode !== null, 5000, 'server gone')
  const stepAtKill = (await waitFor(() => pidRunning(pid), 1000, 'worker still alive')) && Date.now()
  t.ok(stepAtKill, `worker ${pid} survived its server`)

  const second = await startServer(t, env)
  const adopted = await job(second.url, created.id)
  t.equal(adopted.status, 'running', 'the new server shows it running (adopted)')
  t.equal(adopted.attempts, 1, 'still the first attempt')
  const done = await finished(second.url, created.id, 120_000)
  t.equal(done.attempts, 1, 'never restarted')
  const doneLine = second.logs().find((l) => l.jobId === created.id && l.event === 'done')
  t.equal(doneLine?.pid, pid, 'finished by the original worker process')
  const ref = reference(params)
  t.ok(Object.is(done.result.lyapunov, ref.lyapunov) && Object.is(done.result.trace, ref.trace), 'same answer as an uninterrupted run')
  t.equal(await second.stop(), 0, 'second server stops cleanly')
  integrity(t, env.DB_PATH)
})

t.test('server and workers killed together → restart → resumed from the checkpoint, identical answer', async (t) => {
  const env = { ...FAST, ...place(t) }
  const params = { n: 60, steps: 2500, seed: 8 }
  const first = await startServer(t, env)
  const { body: created } = await api(first.url, '/api/jobs', { body: params })
  await waitFor(async () => (await job(first.url, created.id)).step > 300, 60_000, 'step 300')
  const db = openDb(env.DB_PATH)
  // On a fast CPU step 300 can come before the first checkpoint (CHECKPOINT_MS after the start).
  await waitFor(() => db.prepare('SELECT 1 FROM checkpoints WHERE job_id = ?').get(created.id) !== undefined, 30_000, 'a first checkpoint')
  const stepNow = () => db.prepare('SELECT step FROM jobs WHERE id = ?').pluck().get(created.id) as number
  // The rate just before the kill, to turn "one checkpoint interval" into steps.
  const t1 = Date.now()
  const step1 = stepNow()
  await sleep(400)
  const step2 = stepNow()
  const rate = (step2 - step1) / (Date.now() - t1)
  const saved = db.prepare('SELECT step, saved_at FROM checkpoints WHERE job_id = ?').get(created.id) as { step: number, saved_at: number }
  process.kill(-first.proc.pid!, 'SIGKILL')
  const last = db.prepare('SELECT step, checkpoint FROM (SELECT j.step AS step, c.step AS checkpoint FROM jobs j JOIN checkpoints c ON c.job_id = j.id WHERE j.id = ?)').get(created.id) as { step: number, checkpoint: number }
  db.close()
  t.ok(saved.step > 0, `a checkpoint existed (step ${saved.step})`)

  const second = await startServer(t, env)
  const done = await finished(second.url, created.id, 90_000)
  const started = second.logs().filter((l) => l.jobId === created.id && l.event === 'started')
  const resumedFrom = started.at(-1)?.resumedFromStep as number
  t.equal(resumedFrom, last.checkpoint, `resumed from the last checkpoint (step ${resumedFrom})`)
  // The last progress written is at most a heartbeat behind the kill; the work past the checkpoint is redone.
  const redo = last.step - resumedFrom
  const interval = rate * Number(FAST.CHECKPOINT_MS)
  t.ok(redo <= Math.ceil(rate * (Number(FAST.CHECKPOINT_MS) + Number(FAST.HEARTBEAT_MS))) + 2,
    `redid ${redo} steps (~${Math.round(redo / rate)} ms of work); one checkpoint interval is ${FAST.CHECKPOINT_MS} ms, about ${interval.toFixed(0)} steps`)
  t.equal(done.attempts, 2, 'a second attempt finished it')
  const ref = reference(params)
  t.ok(Object.is(done.result.lyapunov, ref.lyapunov), 'lyapunov bit-identical to an uninterrupted run')
  t.ok(Object.is(done.result.trace, ref.trace), 'trace bit-identical to an uninterrupted run')
  t.equal(await second.stop(), 0, 'clean stop')
  integrity(t, env.DB_PATH)
})

t.test('graceful stop (SIGTERM): exit 0, no worker left, jobs pending; the next start resumes them', async (t) => {
  const env = { ...FAST, ...place(t) }
  const params = { n: 60, steps: 2000, seed: 9 }
  const first = await startServer(t, env)
  const { body: created } = await api(first.url, '/api/jobs', { body: params })
  await waitFor(async () => (await job(first.url, created.id)).step > 100, 60_000, 'progress')
  const workerPids = first.logs().filter((l) => l.worker && typeof l.pid === 'number').map((l) => l.pid as number)
  const started = Date.now()
  t.equal(await first.stop('SIGTERM'), 0, 'exit code 0')
  t.ok(Date.now() - started < 8000, `stopped in ${Date.now() - started} ms`)
  for (const pid of new Set(workerPids)) t.notOk(pidRunning(pid), `worker ${pid} is gone`)
  const db = openDb(env.DB_PATH)
  const row = db.prepare('SELECT status, attempts, step FROM jobs WHERE id = ?').get(created.id) as { status: string, attempts: number, step: number }
  const cp = db.prepare('SELECT step FROM checkpoints WHERE job_id = ?').get(created.id) as { step: number } | undefined
  db.close()
  t.equal(row.status, 'pending', 'job back to pending')
  t.equal(row.attempts, 0, 'no attempt charged')
  t.ok(cp && cp.step > 0, `checkpoint at step ${cp?.step}`)

  const second = await startServer(t, env)
  const done = await finished(second.url, created.id, 60_000)
  const resumed = second.logs().filter((l) => l.jobId === created.id && l.event === 'started').at(-1)
  t.equal(resumed?.resumedFromStep, cp?.step, 'resumed where it was released')
  const ref = reference(params)
  t.ok(Object.is(done.result.lyapunov, ref.lyapunov) && Object.is(done.result.trace, ref.trace), 'identical answer')
  t.equal(await second.stop('SIGINT'), 0, 'Ctrl+C (SIGINT) stops cleanly too')
  integrity(t, env.DB_PATH)
})

t.test('a worker frozen past its lease loses the job and is killed; it never writes again', async (t) => {
  const env = { ...FAST, LEASE_MS: '1500', ...place(t) }
  const params = { n: 60, steps: 2500, seed: 10 }
  const server = await startServer(t, env)
  const { body: created } = await api(server.url, '/api/jobs', { body: params })
  const frozen = await waitFor(async () => { const j = await job(server.url, created.id); return j.step > 50 && j.pid }, 30_000, 'progress')
  process.kill(frozen, 'SIGSTOP')
  t.teardown(() => { try { process.kill(frozen, 'SIGKILL') } catch {} })
  const takenOver = await waitFor(async () => { const j = await job(server.url, created.id); return j.attempts === 2 && j.pid && j.pid !== frozen && j }, 60_000, 'a new attempt')
  t.match(takenOver.error, /no heartbeat/, 'the takeover says why')
  // Once lost, the frozen worker is killed: it can never wake up and compete with the new attempt.
  await waitFor(() => !pidRunning(frozen), 10_000, 'the frozen worker to be killed')
  t.pass(`frozen worker ${frozen} is gone`)
  t.ok(server.logs().some((l) => l.jobId === created.id && l.msg === 'lost worker was still there; killed'), 'the server logged the kill')
  const done = await finished(server.url, created.id, 60_000)
  const ref = reference(params)
  t.ok(Object.is(done.result.lyapunov, ref.lyapunov) && Object.is(done.result.trace, ref.trace), 'the live attempt\'s answer, identical to a clean run')
  const doneLines = server.logs().filter((l) => l.jobId === created.id && l.event === 'done')
  t.equal(doneLines.length, 1, 'done exactly once')
  t.not(doneLines[0].pid, frozen, 'by the new worker')
  t.equal(await server.stop(), 0, 'clean stop')
  integrity(t, env.DB_PATH)
})

t.test('attempts exhausted → failed with the reason; timeout → failed "timeout"', async (t) => {
  const env = { ...FAST, MAX_ATTEMPTS: '2', ...place(t) }
  const server = await startServer(t, env)
  const { body: doomed } = await api(server.url, '/api/jobs', { body: { n: 100, steps: 5000, seed: 1 } })
  for (let attempt = 1; attempt <= 2; attempt++) {
    const pid = await waitFor(async () => { const j = await job(server.url, doomed.id); return j.attempts === attempt && j.pid }, 30_000, `attempt ${attempt}`)
    process.kill(pid, 'SIGKILL')
  }
  const failed = await waitFor(async () => { const j = await job(server.url, doomed.id); return j.status === 'failed' && j }, 30_000, 'failed')
  t.match(failed.error, /worker killed by SIGKILL \(attempt 2 of 2\)/, `reason: ${failed.error}`)

  const { body: slow } = await api(server.url, '/api/jobs', { body: { n: 100, steps: 10000, seed: 1, timeoutSeconds: 1 } })
  t.equal(slow.timeoutSeconds, 1, 'timeoutSeconds stored')
  const timedOut = await waitFor(async () => { const j = await job(server.url, slow.id); return j.status === 'failed' && j }, 30_000, 'timeout')
  t.equal(timedOut.error, 'timeout', 'reason is "timeout"')
  t.ok(timedOut.step < 10000, 'stopped before the end')
  t.equal(await server.stop(), 0, 'clean stop')
  integrity(t, env.DB_PATH)
})

t.test('a burst beyond MAX_PENDING gets only 201s and clean 429s, and every accepted job is done', async (t) => {
  const env = { ...FAST, MAX_PENDING: '60', RATE_LIMIT_MAX: '100000', LOG_LEVEL: 'warn', ...place(t) }
  const server = await startServer(t, env)
  const statuses: number[] = []
  const accepted: number[] = []
  for (let wave = 0; wave < 6; wave++) {
    const replies = await Promise.all(Array.from({ length: 50 }, () => api(server.url, '/api/jobs', { body: { n: 2, steps: 1 } })))
    for (const r of replies) {
      statuses.push(r.status)
      if (r.status === 201) accepted.push(r.body.id)
      else if (r.status === 429 && r.headers.get('retry-after') !== '5') t.fail('a 429 without Retry-After')
    }
  }
  const count = (s: number) => statuses.filter((x) => x === s).length
  t.equal(count(201) + count(429), 300, `only 201 (${count(201)}) and 429 (${count(429)})`)
  t.ok(count(429) > 0, 'the cap was reached')
  t.equal(statuses.filter((s) => s >= 500).length, 0, 'no 5xx')
  await waitFor(async () => {
    const { body } = await api(server.url, '/api/jobs?status=done&limit=500')
    return body.jobs.length === accepted.length
  }, 120_000, 'every accepted job to be done')
  const { body: pending } = await api(server.url, '/api/jobs?status=pending')
  t.equal(pending.jobs.length, 0, 'nothing left pending')
  t.equal(await server.stop(), 0, 'clean stop')
  integrity(t, env.DB_PATH)
})
