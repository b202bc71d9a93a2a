/**
 * Worker process: runs exactly one job, then exits. Forked by the scheduler with a worker token; it learns which
 * job is its own, and everything else, from the database only: SQLite at NONSTOP_DB_PATH, or PostgreSQL at
 * NONSTOP_DATABASE_URL, through the asynchronous stores of src/store/open.ts:
 *
 *   wait until a running row carries our token → load its checkpoint → compute in small units →
 *   heartbeat + progress (fenced on the lease), checkpoint every CHECKPOINT_MS → result or error.
 *
 * Every write is awaited between two units of work, one at a time, and matches on (job id, lease, this worker's
 * token). The moment one matches nothing, the job belongs to someone else (this worker was frozen past its lease
 * and the job was taken over): the worker stops without writing. The first heartbeat records the pid and its
 * start time, so the server can tell this process from another one that later gets the same pid.
 *
 * Self-fencing (src/jobs/self-fence.ts): a write that throws (the database unreachable, or locked) is retried with a
 * growing pause while the computation goes on; once no write has succeeded for the lease less a margin, the worker
 * stops computing and exits with EXIT_SELF_FENCED, writing nothing more, so that after a takeover at most one
 * worker computes the job.
 *
 * The job's computation comes from its type's module (src/job-types/ or JOB_TYPES_DIR), imported once the job is
 * known: this worker imports that module and no other type's. Imports only config-free modules: no HTTP, no Fastify.
 */
import { setPriority } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { latestSchemaVersion } from '../db.js'
import { coerceError, NotFoundError } from '../errors.js'
import { createLogger } from '../log.js'
import { importJobType, parseUserModules } from '../job-types/resolve.js'
import { processStartTime } from '../process-identity.js'
import { openStores, type Stores } from '../store/open.js'
import type { Attempt, Fenced } from '../store/job-store.js'
import { monotonicMs } from './clock.js'
import type { Checkpoint, JobRun } from './contract.js'
import { coreCount, threadShare } from './cores.js'
import { createJobContext } from './job-context.js'
import { LyapunovRun } from './lyapunov.js'
import { mathCoreError, mathCoreSource } from './math-core.js'
import { matrixIdsOf, preloadMatrices, preloadedSource } from './matrix-inputs.js'
import { resultToJson } from './result-json.js'
import { createFenceClock, EXIT_SELF_FENCED, fenceBudgetMs, type FenceClock, SelfFenced } from './self-fence.js'
import { type JobRow, type StopRequest, WORKER_ENV } from './types.js'

/**
 * How often an idle worker on SQLite looks for its assignment (a cheap PRAGMA data_version when nothing changed):
 * every 3 ms at first, then a little less often each time it finds nothing, down to every 10 ms. Each look costs a
 * process its wake-up: polling every 3 ms cost a waiting spare ~65 ms of CPU a second (measured: a worker that
 * waited 3 s used ~200 ms more CPU than one claimed at once), CPU the jobs on a 2-core machine lack.
 */
const ASSIGNMENT_POLL_MS = 3
const ASSIGNMENT_POLL_MAX_MS = 10
/** On PostgreSQL each look is a query (no cheap change counter): every 5 ms at first, backing off to 100 ms. */
const PG_ASSIGNMENT_POLL_MS = 5
const PG_ASSIGNMENT_POLL_MAX_MS = 100
/** How long computation runs between two turns of the event loop, so signals are noticed. */
const YIELD_EVERY_MS = 50
/** A checkpoint larger than this is followed by a garbage collection and may stretch the interval (n ≳ 350). */
const LARGE_CHECKPOINT_BYTES = 1 << 20
/** Least time between two progress lines in the log. */
const PROGRESS_LOG_MS = 5000
/** SQLite's busy_timeout of every connection (src/db.ts); a worker's writes wait less when its budget is shorter. */
const SQLITE_BUSY_TIMEOUT_MS = 10_000
/** Exit code of a worker that found the database locked past busy_timeout (the scheduler gives the job back). */
const EXIT_DATABASE_BUSY = 3

const token = process.argv[2]
const env = process.env
const log = createLogger({ logLevel: env.LOG_LEVEL || 'info', logFile: env.LOG_FILE || undefined }, { worker: token })
const databaseUrl = env[WORKER_ENV.databaseUrl] || undefined

if (!token || (!env[WORKER_ENV.dbPath] && !databaseUrl)) {
  log.fatal('a worker is started by the server: worker.js <token> with NONSTOP_DB_PATH or NONSTOP_DATABASE_URL set')
  process.exit(2)
}

const heartbeatMs = Number(env[WORKER_ENV.heartbeatMs] || 1000)
const checkpointMs = Number(env[WORKER_ENV.checkpointMs] || 2000)
// The server's LEASE_MS (src/config.ts defaults it to 10 s).
const leaseMs = Number(env[WORKER_ENV.leaseMs] || 10_000)
const budgetMs = fenceBudgetMs(leaseMs, heartbeatMs)
try {
  setPriority(0, Number(env[WORKER_ENV.nice] || 0))
} catch {
  // Not allowed to change niceness here; computing at normal priority is still correct.
}

if (mathCoreSource === 'full') {
  log.warn(mathCoreError
    ? `${mathCoreError}; this worker loads the full mathjs, ~0.1 s more CPU per worker`
    : 'dist/mathjs-core.cjs is missing (npm run build without esbuild): this worker loads the full mathjs, ~0.1 s more CPU per worker')
}

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

/** The database stayed locked past busy_timeout. */
const databaseBusy = (err: unknown): boolean => /^SQLITE_(BUSY|LOCKED)/.test(String((err as { code?: unknown })?.code))

/** The assignment, and when this worker started looking for it (the start of its fence budget: the claim's
 *  commit is at most the poll's latency before it). */
async function waitForAssignment (stores: Stores): Promise<{ row: JobRow, seenAt: number } | undefined> {
  const { jobs, sqlite } = stores
  let failures = 0
  const look = async (): Promise<{ row: JobRow, seenAt: number } | undefined> => {
    const seenAt = monotonicMs()
    try {
      const row = await jobs.assigned(token)
      failures = 0
      return row && { row, seenAt }
    } catch (err) {
      // A spare holds no job: nothing is at stake, it looks again (the server ends it if it gives up on it).
      if (failures++ % 100 === 0) log.warn({ err }, 'cannot read the assignment; looking again')
      return undefined
    }
  }
  const ready = await look()
  if (ready) return ready
  warmUp()
  const dataVersion = sqlite?.prepare('PRAGMA data_version').pluck()
  let seen = -1
  let pause = dataVersion ? ASSIGNMENT_POLL_MS : PG_ASSIGNMENT_POLL_MS
  const maxPause = dataVersion ? ASSIGNMENT_POLL_MAX_MS : PG_ASSIGNMENT_POLL_MAX_MS
  for (;;) {
    if (signaled) return undefined
    // SQLite: read the row only when another connection committed something since the last look.
    const version = dataVersion ? dataVersion.get() as number : seen + 1
    if (version !== seen) {
      seen = version
      const found = await look()
      if (found) return found
    }
    await sleep(pause)
    pause = Math.min(maxPause, pause * (dataVersion ? 1.25 : 1.5))
  }
}

/** How runJob ended: `lost` = the lease moved on; `abandoned` = left for the scheduler to resume; `fenced` = could
 *  not write for nearly a lease, stopped without writing. */
type Ending = 'done' | 'failed' | 'stopped' | 'lost' | 'abandoned' | 'fenced'

/** A database call that failed for the job's own reasons (its result(), a missing matrix): never retried. */
class JobError extends Error {}

async function runJob (stores: Stores, row: JobRow, fence: FenceClock): Promise<Ending> {
  const { jobs, matrices, sqlite } = stores
  const { id, lease } = row
  const attempt: Attempt = { id, lease, worker: token }
  const jobLog = log.child({ jobId: id, attempt: row.attempts, lease })
  const lost = (): Ending => {
    jobLog.warn('job was taken over by another attempt while this worker was not heard from; stopping without writing')
    return 'lost'
  }

  /**
   * One database call, bounded by the fence: it rejects with SelfFenced when it has not returned by the end of the
   * budget (a query that hangs), and on SQLite it waits for a lock no longer than that. Writes that keep failing
   * spend the budget; a long unit of work does not (after one, the call gets at least a heartbeat's time, and a
   * fenced write tells whether the lease moved on meanwhile). A call that returns counts as a successful write
   * when `write`.
   */
  const bounded = async <T>(call: () => Promise<T>, write: boolean): Promise<T> => {
    if (fence.failures) fence.check()
    const left = Math.ceil(Math.max(fence.remaining(), heartbeatMs))
    sqlite?.pragma(`busy_timeout = ${Math.min(SQLITE_BUSY_TIMEOUT_MS, left)}`)
    let timer: NodeJS.Timeout | undefined
    try {
      const value = await new Promise<T>((resolve, reject) => {
        const arm = (): void => {
          clearTimeout(timer)
          timer = setTimeout(() => reject(fence.fenced(new Error(`a database call did not return within ${left} ms`))), left)
        }
        arm()
        restartTimer = arm
        call().then(resolve, reject)
      })
      if (write) fence.succeeded()
      return value
    } finally {
      clearTimeout(timer)
      restartTimer = undefined
    }
  }
  /** While a bounded call runs: starts its timer again. The job's own result() runs inside completeWith's call; the
   *  timer is for the database, and its time is not the database's (a timer overdue by then has not fired yet: the
   *  build is synchronous). */
  let restartTimer: (() => void) | undefined

  /**
   * A call that must succeed before the worker can go on (the first heartbeat, the reads before the run, the
   * writes that end the job): retried with a growing pause until it does or the fence budget is spent. SQLite's
   * "locked past busy_timeout" is not retried: the worker leaves the job to be resumed, as it always has.
   */
  const settled = async <T>(what: string, call: () => Promise<T>, write = true): Promise<T> => {
    for (;;) {
      try {
        return await bounded(call, write)
      } catch (err) {
        if (err instanceof SelfFenced || err instanceof JobError || err instanceof NotFoundError) throw err
        if (databaseBusy(err)) {
          // Locked past the budget: fenced (exit 4); before that, left to be resumed (exit 3) as always.
          if (fence.remaining() <= 0) throw fence.fenced(err)
          throw err
        }
        fence.failed(err)
        if (fence.failures === 1 || fence.failures % 10 === 0) jobLog.warn({ err, failures: fence.failures, budgetLeftMs: Math.round(fence.remaining()) }, `cannot ${what}; retrying`)
        while (!fence.mayTry()) {
          fence.check()
          await sleep(Math.max(1, Math.min(50, fence.remaining())))
        }
      }
    }
  }

  const first = await settled('write the first heartbeat', () => jobs.begin(attempt, { step: row.step, progress: row.progress, pid: process.pid, pidStart: processStartTime() }))
  if (!first.ok) return lost()
  if (first.value) {
    // Asked to stop before it started (canceled, timed out or released while this worker was booting): nothing
    // computed, so nothing to checkpoint; the stored checkpoint stays for a release.
    const request = first.value
    if (!(await settled('record the stop', () => jobs.stopped(attempt, request))).ok) return lost()
    jobLog.info({ event: request === 'timeout' ? 'failed' : request === 'cancel' ? 'canceled' : 'released', step: row.step, reason: request }, 'job stopped before it started')
    return 'stopped'
  }

  // Compute threads: NONSTOP_THREADS if forced, else this job's share of the cores among the running jobs,
  // re-read from the database with every heartbeat (src/jobs/cores.ts), never inside the compute loop's units.
  const forced = Number(env[WORKER_ENV.threads])
  const cores = coreCount()
  const isForced = Number.isInteger(forced) && forced >= 1
  // The cores are this machine's: they are shared with the jobs of this worker's node only (on PostgreSQL other
  // nodes' jobs run elsewhere).
  const shareNow = async (): Promise<number> => isForced
    ? forced
    : threadShare(id, (await bounded(() => jobs.running(), false)).filter((r) => r.node === row.node).map((r) => r.id), cores)
  let threads = isForced ? forced : await settled('read the running jobs', shareNow, false)

  let run: JobRun
  const checkpoint = await settled('read the checkpoint', () => jobs.loadCheckpoint(id), false)
  // Any failure here is the job's own (its module, its params, its checkpoint, a missing matrix): it fails for
  // good rather than being retried, since every new attempt would meet the same module and the same checkpoint.
  let stage = `cannot load job type "${row.type}"`
  try {
    const definition = await importJobType(row.type, parseUserModules(env[WORKER_ENV.jobTypeModules]))
    stage = 'cannot read its params'
    const params = JSON.parse(row.params) as Record<string, unknown>
    // The matrices its params name, read now: a run reads them synchronously (src/jobs/matrix-inputs.ts).
    stage = 'cannot read its matrices'
    const ids = matrixIdsOf(definition.params, params)
    const loaded = ids.length ? await settled('read the job\'s matrices', () => preloadMatrices(ids, (m) => matrices.load(m)), false) : new Map()
    stage = checkpoint ? `cannot restore the checkpoint of step ${checkpoint.step}` : 'cannot start'
    run = await definition.create(params, checkpoint, createJobContext(jobLog, preloadedSource(ids, loaded), () => threads))
  } catch (err) {
    if (err instanceof SelfFenced || databaseBusy(err)) throw err
    const message = `${stage}: ${coerceError(err).message}`
    jobLog.error({ err, event: 'failed', reason: message }, 'job failed')
    return (await settled('record the failure', () => jobs.fail(attempt, message))).ok ? 'failed' : lost()
  }
  jobLog.info({ event: 'started', resumedFromStep: checkpoint?.step ?? null, steps: run.steps }, 'job started')

  const progressOf = (): number => Math.round(run.fraction * 10000) / 100
  let lastBeat = Date.now()
  let lastCheckpoint = lastBeat
  let lastYield = lastBeat
  let lastLog = lastBeat
  let checkpointEvery = checkpointMs

  const stop = async (request: StopRequest): Promise<Ending> => {
    // Give the next attempt as little to redo as possible: a checkpoint first.
    if (request === 'release' && !run.finished) {
      const saved = storable(run.checkpoint())
      if (!(await settled('save the checkpoint', () => jobs.saveCheckpoint(attempt, saved, progressOf()))).ok) return lost()
    }
    if (!(await settled('record the stop', () => jobs.stopped(attempt, request))).ok) return lost()
    jobLog.info({ event: request === 'timeout' ? 'failed' : request === 'cancel' ? 'canceled' : 'released', step: run.step, reason: request }, `job ${request === 'release' ? 'released to pending' : request === 'cancel' ? 'canceled' : 'failed: timeout'}`)
    return 'stopped'
  }

  /**
   * A heartbeat or checkpoint from the compute loop: awaited, but a failure does not stop the computation. It is
   * retried after a growing pause (the caller keeps computing meanwhile) until the fence budget is spent.
   */
  const loopWrite = async (what: string, call: () => Promise<Fenced<StopRequest | null>>): Promise<Fenced<StopRequest | null> | null> => {
    try {
      const written = await bounded(call, true)
      if (fence.failures) jobLog.info({ failures: fence.failures }, `database writes succeed again (${what})`)
      return written
    } catch (err) {
      if (err instanceof SelfFenced) throw err
      const wasFailing = fence.failures > 0
      fence.failed(err)
      if (!wasFailing || fence.failures % 10 === 0) jobLog.warn({ err, failures: fence.failures, budgetLeftMs: Math.round(fence.remaining()) }, `cannot ${what}; computing on and retrying`)
      return null
    }
  }

  try {
    while (!run.finished) {
      const unit = run.advance()
      if (unit) await unit
      const now = Date.now()
      let written: Fenced<StopRequest | null> | null = null
      if (fence.failures) fence.check()
      if (!run.finished && now - lastCheckpoint >= checkpointEvery && fence.mayTry()) {
        const saved = storable(run.checkpoint())
        written = await loopWrite('save a checkpoint', () => jobs.saveCheckpoint(attempt, saved, progressOf()))
        if (written) {
          lastCheckpoint = lastBeat = Date.now()
          if (saved.state.byteLength > LARGE_CHECKPOINT_BYTES) {
            // Serializing a large state leaves tens of MB behind (the buffer, the driver's copy) that V8 would only
            // collect much later: collect now, while it is certainly garbage, so the worker's peak stays low.
            globalThis.gc?.()
            // And such a checkpoint is not free: keep its cost under ~5 % of the computing time.
            checkpointEvery = Math.max(checkpointMs, 20 * (Date.now() - now))
          }
        }
      } else if (now - lastBeat >= heartbeatMs && fence.mayTry()) {
        written = await loopWrite('write a heartbeat', () => jobs.beat(attempt, { step: run.step, progress: progressOf() }))
        if (written) {
          lastBeat = now
          if (!isForced && written.ok && !written.value) {
            try {
              threads = await shareNow()
            } catch (err) {
              if (err instanceof SelfFenced) throw err
              // Keeps the share it had; the next heartbeat reads it again.
            }
          }
        }
      }
      if (written && !written.ok) return lost()
      if (written?.value) return await stop(written.value)
      if (now - lastLog >= PROGRESS_LOG_MS) {
        jobLog.info({ event: 'progress', step: run.step, progress: progressOf() }, 'job progress')
        lastLog = now
      }
      if (now - lastYield >= YIELD_EVERY_MS) {
        await new Promise(setImmediate)
        lastYield = Date.now()
        if (signaled) return await stop('release')
      }
    }
    // result() runs once the store knows this attempt holds the job (inside the ending transaction on SQLite, just
    // before it on PostgreSQL): the matrices it stores are kept only if this attempt still holds the job, and a
    // result() that throws stores nothing. Should the write fail for the database's sake (not the job's), it is
    // tried again and result() runs again. The time result() takes is not counted against the database call.
    let result: { elapsedMs?: number, gflops?: number } = {}
    const completed = await settled('record the result', () => jobs.completeWith(attempt, (out) => {
      try {
        result = JSON.parse(resultToJson(run.result(out)))
      } catch (err) {
        throw new JobError(`result() failed: ${coerceError(err).message}`, { cause: err })
      } finally {
        restartTimer?.()
      }
      return result
    }))
    if (!completed.ok) return lost()
    jobLog.info({ event: 'done', elapsedMs: result.elapsedMs, gflops: result.gflops, result }, 'job done')
    return 'done'
  } catch (err) {
    if (err instanceof SelfFenced || databaseBusy(err)) throw err
    const error = coerceError(err)
    jobLog.error({ err: error, event: 'failed', reason: error.message }, 'job failed')
    return (await settled('record the failure', () => jobs.fail(attempt, error.message))).ok ? 'failed' : lost()
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

async function open (): Promise<Stores> {
  try {
    const stores = await openStores({ databaseUrl, dbPath: env[WORKER_ENV.dbPath] ?? '', pgPoolMax: 2 }, {
      role: 'worker',
      leaseMs: Number(env[WORKER_ENV.leaseMs]) || undefined,
      onError: (err) => log.warn({ err }, 'an idle database connection failed')
    })
    const schema = stores.sqlite?.pragma('user_version', { simple: true })
    if (stores.sqlite && schema !== latestSchemaVersion()) {
      log.fatal({ schema, expected: latestSchemaVersion() }, 'database schema does not match this worker; refusing to run')
      process.exit(2)
    }
    return stores
  } catch (err) {
    log.fatal({ err }, 'cannot open the database; refusing to run')
    process.exit(2)
  }
}

// No top-level await: the bundled worker (scripts/build-worker.js) is a CommonJS file, which spares every worker
// the ES module loader's start-up.
async function main (): Promise<never> {
  const stores = await open()
  const found = await waitForAssignment(stores)
  idle = false
  let ending: Ending = 'stopped'
  if (found) {
    const fence = createFenceClock(budgetMs, found.seenAt)
    const jobLog = log.child({ jobId: found.row.id, lease: found.row.lease })
    try {
      ending = await runJob(stores, found.row, fence)
    } catch (err) {
      if (err instanceof SelfFenced) {
        // Nothing more is written, and the pool is not closed politely (that would wait on a hung query).
        jobLog.error({ err, event: 'self-fenced', silentMs: err.silentMs, budgetMs: err.budgetMs, leaseMs, lastError: err.lastError }, 'could not write to the database for nearly a lease: stopped computing, exiting so that at most one worker computes this job')
        process.exit(EXIT_SELF_FENCED)
      }
      // The database stayed locked past busy_timeout: not the job's fault. Exit (code 3) without an end; the
      // scheduler sees the exit and resumes the job from its checkpoint without charging an attempt.
      if (!databaseBusy(err)) throw err
      jobLog.error({ err }, 'database busy for too long; leaving the job to be resumed')
      ending = 'abandoned'
    }
  }
  await stores.close()
  // Non-zero when the job did not end here: failed (1), left to be resumed (3), self-fenced (4, above).
  process.exit(ending === 'failed' ? 1 : ending === 'abandoned' ? EXIT_DATABASE_BUSY : 0)
}

// A rejection is not caught: Node ends the process with code 1 and the error, as a top-level await did.
main().catch((err: unknown) => { throw err })
