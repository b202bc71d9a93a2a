/**
 * Worker process: runs exactly one job, then exits. Forked by the scheduler with a worker token; it learns
 * which job is its own, and everything else, from SQLite only:
 *
 *   wait until a running row carries our token → load its checkpoint → compute in small units →
 *   heartbeat + progress (fenced on the lease), checkpoint every CHECKPOINT_MS → result or error.
 *
 * Every write matches on (job id, lease, this worker's token). The moment one matches nothing, the job belongs
 * to someone else (this worker was frozen past its lease and the job was taken over): the worker stops without
 * writing. The first heartbeat records the pid and its start time, so the server can tell this process from
 * another one that later gets the same pid.
 *
 * The job's computation comes from its type's module (src/job-types/ or JOB_TYPES_DIR), imported once the job is
 * known: this worker imports that module and no other type's. Imports only config-free modules: no HTTP, no Fastify.
 */
import { setPriority } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { latestSchemaVersion, openDb } from '../db.js'
import { coerceError } from '../errors.js'
import { createLogger } from '../log.js'
import { importJobType, parseUserModules } from '../job-types/resolve.js'
import { createMatrixStore } from '../matrices/store.js'
import { processStartTime } from '../process-identity.js'
import type { Checkpoint, JobRun } from './contract.js'
import { coreCount, threadShare } from './cores.js'
import { createJobContext, createResultContext } from './job-context.js'
import { LyapunovRun } from './lyapunov.js'
import { mathCoreSource } from './math-core.js'
import { resultToJson } from './result-json.js'
import { type Attempt, createJobStore, type Fenced } from './store.js'
import { type JobRow, type StopRequest, WORKER_ENV } from './types.js'

/**
 * How often an idle worker looks for its assignment (a cheap PRAGMA data_version when nothing changed): every 3 ms
 * at first, then a little less often each time it finds nothing, down to every 10 ms. Each look costs a process
 * its wake-up: polling every 3 ms cost a waiting spare ~65 ms of CPU a second (measured: a worker that waited 3 s
 * used ~200 ms more CPU than one claimed at once), CPU the jobs on a 2-core machine lack.
 */
const ASSIGNMENT_POLL_MS = 3
const ASSIGNMENT_POLL_MAX_MS = 10
/** How long computation runs between two turns of the event loop, so signals are noticed. */
const YIELD_EVERY_MS = 50
/** A checkpoint larger than this is followed by a garbage collection and may stretch the interval (n ≳ 350). */
const LARGE_CHECKPOINT_BYTES = 1 << 20
/** Least time between two progress lines in the log. */
const PROGRESS_LOG_MS = 5000

const token = process.argv[2]
const env = process.env
const log = createLogger({ logLevel: env.LOG_LEVEL || 'info', logFile: env.LOG_FILE || undefined }, { worker: token })

if (!token || !env[WORKER_ENV.dbPath]) {
  log.fatal('a worker is started by the server: worker.js <token> with NONSTOP_DB_PATH set')
  process.exit(2)
}

const heartbeatMs = Number(env[WORKER_ENV.heartbeatMs] || 1000)
const checkpointMs = Number(env[WORKER_ENV.checkpointMs] || 2000)
try {
  setPriority(0, Number(env[WORKER_ENV.nice] || 0))
} catch {
  // Not allowed to change niceness here; computing at normal priority is still correct.
}

if (mathCoreSource === 'full') log.warn('dist/mathjs-core.cjs is missing (npm run build without esbuild): this worker loads the full mathjs, ~0.2 s more CPU per worker')

const db = openDb(env[WORKER_ENV.dbPath] as string)
const schema = db.pragma('user_version', { simple: true })
if (schema !== latestSchemaVersion()) {
  log.fatal({ schema, expected: latestSchemaVersion() }, 'database schema does not match this worker; refusing to run')
  process.exit(2)
}
const store = createJobStore(db)
const matrices = createMatrixStore(db)
const dataVersion = db.prepare('PRAGMA data_version').pluck()

// A signal (Ctrl+C reaches the whole process group, SIGTERM from a service manager) means: checkpoint, give
// the job back, exit. The server's release request means the same.
let signaled: NodeJS.Signals | null = null
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { signaled = sig })

// While idle, a worker exists only for its server: when the server goes, so does the spare. Once it holds a
// job it keeps going without the server, which is what lets a restarted server adopt it.
let idle = true
process.on('disconnect', () => { if (idle) process.exit(0) })
process.channel?.unref()

/**
 * mathjs builds each function's dispatch on first call, which costs a new process ~0.1 s of CPU. A spare (no job
 * yet) pays it while it waits, so the job it gets starts computing at once.
 */
function warmUp (): void {
  const run = new LyapunovRun({ n: 40, steps: 1, seed: 0 })
  while (!run.finished) run.advance()
  run.checkpoint()
}

async function waitForAssignment (): Promise<JobRow | undefined> {
  const ready = store.assigned(token)
  if (ready) return ready
  warmUp()
  let seen = -1
  let pause = ASSIGNMENT_POLL_MS
  for (;;) {
    if (signaled) return undefined
    const version = dataVersion.get() as number
    if (version !== seen) {
      seen = version
      const row = store.assigned(token)
      if (row) return row
    }
    await sleep(pause)
    pause = Math.min(ASSIGNMENT_POLL_MAX_MS, pause * 1.25)
  }
}

/** How runJob ended: `lost` = the lease moved on; `abandoned` = left for the scheduler to resume. */
type Ending = 'done' | 'failed' | 'stopped' | 'lost' | 'abandoned'

/** The database stayed locked past busy_timeout. */
const databaseBusy = (err: unknown): boolean => /^SQLITE_(BUSY|LOCKED)/.test(String((err as { code?: unknown })?.code))

async function runJob (row: JobRow): Promise<Ending> {
  const { id, lease } = row
  const attempt: Attempt = { id, lease, worker: token }
  const jobLog = log.child({ jobId: id, attempt: row.attempts, lease })
  const lost = (): Ending => {
    jobLog.warn('job was taken over by another attempt while this worker was not heard from; stopping without writing')
    return 'lost'
  }
  const first = store.begin(attempt, { step: row.step, progress: row.progress, pid: process.pid, pidStart: processStartTime() })
  if (!first.ok) return lost()
  if (first.value) {
    // Asked to stop before it started (canceled, timed out or released while this worker was booting): nothing
    // computed, so nothing to checkpoint; the stored checkpoint stays for a release.
    const request = first.value
    if (!store.stopped(attempt, request).ok) return lost()
    jobLog.info({ event: request === 'timeout' ? 'failed' : request === 'cancel' ? 'canceled' : 'released', step: row.step, reason: request }, 'job stopped before it started')
    return 'stopped'
  }

  // Compute threads: NONSTOP_THREADS if forced, else this job's share of the cores among the running jobs,
  // re-read from the database with every heartbeat (src/jobs/cores.ts).
  const forced = Number(env[WORKER_ENV.threads])
  const cores = coreCount()
  const shareNow = (): number => Number.isInteger(forced) && forced >= 1 ? forced : threadShare(id, store.running().map((r) => r.id), cores)
  let threads = shareNow()

  let run: JobRun
  const checkpoint = store.loadCheckpoint(id)
  // Any failure here is the job's own (its module, its params, its checkpoint): it fails for good rather than
  // being retried, since every new attempt would meet the same module and the same checkpoint.
  let stage = `cannot load job type "${row.type}"`
  try {
    const definition = await importJobType(row.type, parseUserModules(env[WORKER_ENV.jobTypeModules]))
    stage = checkpoint ? `cannot restore the checkpoint of step ${checkpoint.step}` : 'cannot start'
    run = await definition.create(JSON.parse(row.params), checkpoint, createJobContext(jobLog, matrices, () => threads))
  } catch (err) {
    const message = `${stage}: ${coerceError(err).message}`
    jobLog.error({ err, event: 'failed', reason: message }, 'job failed')
    return store.fail(attempt, message).ok ? 'failed' : lost()
  }
  jobLog.info({ event: 'started', resumedFromStep: checkpoint?.step ?? null, steps: run.steps }, 'job started')

  const progressOf = (): number => Math.round(run.fraction * 10000) / 100
  let lastBeat = Date.now()
  let lastCheckpoint = lastBeat
  let lastYield = lastBeat
  let lastLog = lastBeat
  let checkpointEvery = checkpointMs

  const stop = (request: StopRequest): Ending => {
    // Give the next attempt as little to redo as possible: a checkpoint first.
    if (request === 'release' && !run.finished) {
      if (!store.saveCheckpoint(attempt, storable(run.checkpoint()), progressOf()).ok) return lost()
    }
    if (!store.stopped(attempt, request).ok) return lost()
    jobLog.info({ event: request === 'timeout' ? 'failed' : request === 'cancel' ? 'canceled' : 'released', step: run.step, reason: request }, `job ${request === 'release' ? 'released to pending' : request === 'cancel' ? 'canceled' : 'failed: timeout'}`)
    return 'stopped'
  }

  try {
    while (!run.finished) {
      const unit = run.advance()
      if (unit) await unit
      const now = Date.now()
      let written: Fenced<StopRequest | null> | null = null
      if (!run.finished && now - lastCheckpoint >= checkpointEvery) {
        const saved = storable(run.checkpoint())
        written = store.saveCheckpoint(attempt, saved, progressOf())
        lastCheckpoint = lastBeat = Date.now()
        if (saved.state.byteLength > LARGE_CHECKPOINT_BYTES) {
          // Serializing a large state leaves tens of MB behind (the buffer, the driver's copy) that V8 would only
          // collect much later: collect now, while it is certainly garbage, so the worker's peak stays low.
          globalThis.gc?.()
          // And such a checkpoint is not free: keep its cost under ~5 % of the computing time.
          checkpointEvery = Math.max(checkpointMs, 20 * (Date.now() - now))
        }
      } else if (now - lastBeat >= heartbeatMs) {
        written = store.beat(attempt, { step: run.step, progress: progressOf() })
        lastBeat = now
        threads = shareNow()
      }
      if (written && !written.ok) return lost()
      if (written?.value) return stop(written.value)
      if (now - lastLog >= PROGRESS_LOG_MS) {
        jobLog.info({ event: 'progress', step: run.step, progress: progressOf() }, 'job progress')
        lastLog = now
      }
      if (now - lastYield >= YIELD_EVERY_MS) {
        await new Promise(setImmediate)
        lastYield = Date.now()
        if (signaled) return stop('release')
      }
    }
    // result() runs inside the fenced transaction that marks the job done: the matrices it stores are kept only
    // if this attempt still holds the job, and a result() that throws stores nothing.
    let result: { elapsedMs?: number, gflops?: number } = {}
    const completed = store.complete(attempt, () => {
      try {
        result = JSON.parse(resultToJson(run.result(createResultContext(id, matrices))))
      } catch (err) {
        throw new Error(`result() failed: ${coerceError(err).message}`, { cause: err })
      }
      return result
    })
    if (!completed.ok) return lost()
    jobLog.info({ event: 'done', elapsedMs: result.elapsedMs, gflops: result.gflops, result }, 'job done')
    return 'done'
  } catch (err) {
    const error = coerceError(err)
    if (databaseBusy(error)) {
      // The database stayed locked past busy_timeout: not the job's fault. Exit (code 3) without an end; the
      // scheduler sees the exit and resumes the job from its checkpoint without charging an attempt.
      jobLog.error({ err: error }, 'database busy for too long; leaving the job to be resumed')
      return 'abandoned'
    }
    jobLog.error({ err: error, event: 'failed', reason: error.message }, 'job failed')
    return store.fail(attempt, error.message).ok ? 'failed' : lost()
  } finally {
    try {
      await run.close?.()
    } catch (err) {
      jobLog.warn({ err }, 'the run failed to close; ignored')
    }
  }
}

/** A run's checkpoint as the store binds it: a Buffer over the same bytes (no copy). */
function storable (saved: Checkpoint): { step: number, state: Buffer } {
  const { state } = saved
  return { step: saved.step, state: Buffer.isBuffer(state) ? state : Buffer.from(state.buffer, state.byteOffset, state.byteLength) }
}

// No top-level await: the bundled worker (scripts/build-worker.js) is a CommonJS file, which spares every worker
// the ES module loader's start-up.
async function main (): Promise<never> {
  const row = await waitForAssignment()
  idle = false
  // A busy database on the first or last write (outside runJob's own catch) is also left to be resumed.
  const ending = row ? await runJob(row).catch((err: unknown) => { if (databaseBusy(err)) return 'abandoned' as const; throw err }) : 'stopped'
  db.close()
  // Non-zero when the job did not end here: failed (1), or left to be resumed (3).
  process.exit(ending === 'failed' ? 1 : ending === 'abandoned' ? 3 : 0)
}

// A rejection is not caught: Node ends the process with code 1 and the error, as a top-level await did.
main().catch((err: unknown) => { throw err })
