import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Config } from '../config.js'
import type { Logger } from '../log.js'
import { checkProcess, hasFileOpen, type ProcessCheck } from '../process-identity.js'
import type { JobStore } from './store.js'
import { type JobRow, WORKER_ENV } from './types.js'

/** The worker entry beside this module, with the extension this process runs (.ts under tests, .js in dist/). */
export const WORKER_ENTRY = fileURLToPath(new URL(`./worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url))

/** The same worker bundled into one CommonJS file by `npm run build` (scripts/build-worker.js). */
export const WORKER_BUNDLE = fileURLToPath(new URL('./worker-bundle.cjs', import.meta.url))

/** Newest modification time of the .js files under `dir`. */
function newestJs (dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestJs(path))
    else if (entry.name.endsWith('.js')) newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}

/**
 * Which worker to fork: the bundle, which starts with less CPU (docs/benchmarks.md, "Worker start"), when it is
 * there and at least as new as every compiled module (a `tsc --watch` rebuild leaves it stale); else the plain
 * module, which does the same, with the reason. Under the test runner (.ts) always the plain module.
 */
export function chooseWorkerEntry (): { entry: string, bundled: boolean, why?: string } {
  if (!WORKER_ENTRY.endsWith('.js')) return { entry: WORKER_ENTRY, bundled: false, why: 'running from the TypeScript sources' }
  try {
    if (!existsSync(WORKER_BUNDLE)) return { entry: WORKER_ENTRY, bundled: false, why: `${WORKER_BUNDLE} was not built (npm run build without esbuild?)` }
    if (statSync(WORKER_BUNDLE).mtimeMs < newestJs(dirname(dirname(WORKER_ENTRY)))) return { entry: WORKER_ENTRY, bundled: false, why: `${WORKER_BUNDLE} is older than the compiled modules (run npm run build)` }
    return { entry: WORKER_BUNDLE, bundled: true }
  } catch (err) {
    return { entry: WORKER_ENTRY, bundled: false, why: `cannot check ${WORKER_BUNDLE}: ${String(err)}` }
  }
}

/**
 * Node flags of a worker. A smaller young generation: the product allocates row arrays that die young, and V8's
 * default lets them pile up to ~270 MB at n = 1000; 4 MB semi-spaces keep the peak lower at no measurable speed
 * cost. `gc()` is exposed so a worker can collect right after writing a large checkpoint. The server's own heap
 * limits (npm start sets small ones) are not inherited: a worker at n = 2000 needs more.
 */
export function workerExecArgv (parent: readonly string[] = process.execArgv): string[] {
  return [...parent.filter((arg) => !/^--max-(old|semi)-space-size/.test(arg)), '--max-semi-space-size=4', '--expose-gc']
}

/** A runnable worker silent for this many leases is taken as hung rather than starved of CPU. */
const UNRESPONSIVE_LEASES = 6

/** How often the scheduler looks at the table even when nothing told it to. */
const TICK_MS = 250

/** Exit code of a worker that found the database locked past busy_timeout (not the job's fault). */
const EXIT_DATABASE_BUSY = 3

/** Re-forking after workers die at boot waits this long, doubling with each failure in a row, up to the cap. */
const BOOT_BACKOFF_MS = 250
const BOOT_BACKOFF_CAP_MS = 30_000
/** Without /proc to see it open the database, a spare still alive this long after its fork has booted. */
const BOOTED_AFTER_MS = 5000
/** Failures at boot in a row from which /readyz says not ready. */
const UNREADY_BOOT_FAILURES = 2

/** A worker process this server forked. */
interface Child {
  token: string
  process: ChildProcess
  forkedAt: number
  /** Job and lease it was given; unset while it waits as a spare. */
  jobId?: number
  lease?: number
  /** The scheduler itself told it to go (a spare no longer wanted). */
  dismissed?: boolean
  /** Known to have booted: it wrote a heartbeat, ended a job, or opened the database as a spare. */
  booted?: boolean
}

/** Whether the scheduler can start jobs: false while workers keep dying at boot (for /readyz). */
export interface SchedulerHealth { ok: boolean, reason?: string }

/** Counters the scheduler keeps for metrics and tests. */
export interface SchedulerStats {
  forks: number
  lost: number
  requeued: number
  killed: number
}

export interface SchedulerOptions {
  store: JobStore
  config: Config
  log: Logger
  /** Worker script to fork; defaults to the bundled worker, or the sibling worker module (chooseWorkerEntry). */
  workerEntry?: string
  /** Modules of the user job types (name → path), handed to every worker so it imports its job's. */
  jobTypeModules?: Readonly<Record<string, string>>
}

export type Scheduler = ReturnType<typeof createScheduler>

/**
 * Starts jobs and watches them. At most MAX_CONCURRENCY jobs run at once, counted from the table, so workers
 * adopted from a previous server count too. It forks one process per job (plus, optionally, booted spares
 * waiting for the next job), tells it its job only by writing the claim into SQLite, and sees every end:
 * the exit of its own children, and for any worker a heartbeat older than the lease.
 */
export function createScheduler ({ store, config, log, workerEntry: givenEntry, jobTypeModules = {} }: SchedulerOptions) {
  let workerEntry = givenEntry ?? WORKER_ENTRY
  if (givenEntry === undefined) {
    const chosen = chooseWorkerEntry()
    workerEntry = chosen.entry
    if (!chosen.bundled && WORKER_ENTRY.endsWith('.js')) log.warn({ why: chosen.why }, 'forking the plain worker module, not the bundle: each worker starts with more CPU')
  }
  const children = new Map<string, Child>()
  const stats: SchedulerStats = { forks: 0, lost: 0, requeued: 0, killed: 0 }
  /** Booted workers waiting for a job: one while the queue is empty, one per slot while jobs wait. */
  const spares: Child[] = []
  let timer: NodeJS.Timeout | null = null
  let queued = false
  let stopping = false
  let lastTickAt: number | null = null
  /** Workers that died at boot in a row, why the last one did, and when the next fork may happen. */
  let bootFailures = 0
  let lastBootFailure = ''
  let nextForkAt = 0
  /** A worker forked after a failure at boot whose fate is not known yet: no other fork until it is. */
  let probe: Child | null = null

  function canFork (): boolean {
    return bootFailures === 0 || (probe === null && Date.now() >= nextForkAt)
  }

  function booted (child: Child): void {
    if (child.booted) return
    child.booted = true
    if (probe === child) probe = null
    if (bootFailures > 0) log.info({ worker: child.token, after: bootFailures }, 'workers boot again')
    bootFailures = 0
  }

  function failedAtBoot (child: Child, why: string): void {
    if (probe === child) probe = null
    bootFailures++
    lastBootFailure = why
    const delay = Math.min(BOOT_BACKOFF_CAP_MS, BOOT_BACKOFF_MS * 2 ** (bootFailures - 1))
    nextForkAt = Date.now() + delay
    log.error({ worker: child.token, why, failures: bootFailures, retryInMs: delay }, 'worker died at boot; forking again after a pause')
  }

  /**
   * An idle spare has booted once it has the database open (all its imports loaded). Its age alone says nothing on
   * a starved machine, where a worker that dies at boot can take seconds to do so; only without /proc is it used.
   */
  function spareBooted (spare: Child, now: number): boolean {
    const pid = spare.process.pid
    const opened = pid === undefined ? false : hasFileOpen(pid, config.dbPath)
    return opened ?? now - spare.forkedAt >= BOOTED_AFTER_MS
  }

  function spawnWorker (): Child {
    const token = randomBytes(8).toString('hex')
    const child = fork(workerEntry, [token], {
      execArgv: workerExecArgv(),
      env: {
        ...process.env,
        [WORKER_ENV.dbPath]: config.dbPath,
        [WORKER_ENV.heartbeatMs]: String(config.heartbeatMs),
        [WORKER_ENV.checkpointMs]: String(config.checkpointMs),
        [WORKER_ENV.nice]: String(config.workerNice),
        [WORKER_ENV.jobTypeModules]: JSON.stringify(jobTypeModules),
        LOG_LEVEL: config.logLevel,
        LOG_FILE: config.logFile ?? ''
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    const entry: Child = { token, process: child, forkedAt: Date.now() }
    children.set(token, entry)
    if (bootFailures > 0) probe = entry
    stats.forks++
    child.on('error', (err) => log.error({ err, worker: token }, 'worker process error'))
    child.on('exit', (code, signal) => onExit(entry, code, signal))
    return entry
  }

  function onExit (child: Child, code: number | null, signal: NodeJS.Signals | null): void {
    children.delete(child.token)
    const idle = spares.indexOf(child)
    if (idle >= 0) spares.splice(idle, 1)
    // Settling an exit writes to the database; a failure there (disk full, I/O error) is logged and left to the
    // next tick, which finds the row running with its worker gone. Thrown from an 'exit' listener it would
    // crash the server.
    try {
      const how = signal ? `killed by ${signal}` : `exited with code ${code}`
      if (child.jobId !== undefined && child.lease !== undefined) {
        const row = store.get(child.jobId)
        const current = row && row.status === 'running' && row.lease === child.lease && row.worker === child.token ? row : undefined
        if (code === 0 || (row && !current)) booted(child)
        else if (current && current.pid === null && code !== EXIT_DATABASE_BUSY && !stopping) failedAtBoot(child, `worker ${how} before its first heartbeat`)
        if (current) {
          // The worker left without writing an end: settle what was asked of it, give back an attempt the
          // database took from it, or count the attempt as lost.
          if (current.stop_request) settle(current, `worker stopped (${signal ?? `code ${code}`})`)
          else if (code === EXIT_DATABASE_BUSY) giveBack(current)
          else lose(current, `worker ${how}`, { exited: true })
        }
      } else if (!stopping && !child.dismissed) {
        if (code === 0 && !signal) booted(child)
        else failedAtBoot(child, `idle worker ${how}`)
      }
    } catch (err) {
      log.error({ err, worker: child.token, jobId: child.jobId }, 'could not settle the exit of a worker; the next pass will')
    }
    wake()
  }

  function settle (row: JobRow, why: string): void {
    if (!row.stop_request || !store.settleStop(row, row.stop_request, why)) return
    const event = row.stop_request === 'release' ? 'released' : row.stop_request === 'cancel' ? 'canceled' : 'failed'
    log.info({ jobId: row.id, event, reason: row.stop_request, why }, `job ${event}`)
  }

  function giveBack (row: JobRow): void {
    if (!store.giveBack(row, 'worker found the database locked for too long')) return
    log.warn({ jobId: row.id, event: 'requeued', workerPid: row.pid, reason: 'database busy' }, 'worker left its job: database busy; back to pending, no attempt charged')
  }

  /**
   * The attempt is lost: back to pending or failed. A worker that is still there (frozen, or running but
   * silent) is killed, so it can never compete with the next attempt for CPU or memory.
   */
  function lose (row: JobRow, reason: string, { exited = false } = {}): void {
    const outcome = store.markLost(row, reason, config.maxAttempts)
    if (outcome === 'gone') return
    stats.lost++
    if (outcome === 'requeued') stats.requeued++
    const checkpoint = store.checkpointInfo(row.id)
    const fields = { jobId: row.id, attempt: row.attempts, workerPid: row.pid, reason, resumeFromStep: checkpoint?.step ?? 0 }
    if (outcome === 'failed') log.error({ ...fields, event: 'failed' }, 'job failed: no attempts left')
    else log.warn({ ...fields, event: 'requeued' }, 'job lost its worker; back to pending')
    if (!exited && kill(row)) log.warn({ jobId: row.id, workerPid: row.pid }, 'lost worker was still there; killed')
  }

  /**
   * What the worker of a running row is now. Our own children are known by their handle; an adopted worker
   * only by the pid and start time it recorded with its first heartbeat and the token in its command line: a
   * pid that now names another process means the worker is gone.
   */
  function workerState (row: JobRow): ProcessCheck | 'unknown' {
    const own = row.worker ? children.get(row.worker) : undefined
    if (own?.process.pid !== undefined) {
      if (own.process.exitCode !== null || own.process.signalCode !== null) return 'gone'
      const check = checkProcess(own.process.pid, {})
      return check === 'foreign' || check === 'unverified' ? 'running' : check
    }
    if (row.pid === null) return 'unknown'
    return checkProcess(row.pid, { start: row.pid_start, token: row.worker })
  }

  /**
   * SIGKILL to the worker of a row: our own child through its handle, an adopted one only once its identity
   * is verified (never a process that merely has the same pid). Returns whether a signal was sent.
   */
  function kill (row: JobRow): boolean {
    const own = row.worker ? children.get(row.worker) : undefined
    if (own) {
      if (own.process.exitCode !== null || own.process.signalCode !== null) return false
      const sent = own.process.kill('SIGKILL')
      if (sent) stats.killed++
      return sent
    }
    if (row.pid === null) return false
    const state = checkProcess(row.pid, { start: row.pid_start, token: row.worker })
    if (state !== 'running' && state !== 'stopped') return false
    try {
      process.kill(row.pid, 'SIGKILL')
      stats.killed++
      return true
    } catch {
      return false // Gone meanwhile.
    }
  }

  /** One pass over the running jobs (time limits, overdue stops, lost leases), then new claims. */
  function tick (): void {
    queued = false
    if (stopping) return
    const now = Date.now()
    let running = 0
    for (const row of store.running()) {
      const own = row.worker ? children.get(row.worker) : undefined
      if (own && row.pid !== null) booted(own)
      const state = workerState(row)
      const timedOut = row.timeout_ms !== null && row.started_at !== null && now >= row.started_at + row.timeout_ms
      if (!own && (state === 'gone' || state === 'foreign')) {
        // An adopted worker that is no more (its pid gone, or now another process's): carry out what was asked of
        // it here, or resume the job at once. Nothing is signalled.
        const request = row.stop_request === 'cancel' || row.stop_request === 'timeout' ? row.stop_request : timedOut ? 'timeout' : row.stop_request
        const why = state === 'gone' ? `worker pid ${row.pid} is gone` : `pid ${row.pid} now belongs to another process`
        if (request) settle({ ...row, stop_request: request }, why)
        else lose(row, why, { exited: true })
        continue
      }
      // The run-time limit, a separate clock from the lease: past it the worker is asked to stop (and is killed
      // below if it does not); a pending release is overridden.
      if (timedOut && (row.stop_request === null || row.stop_request === 'release')) {
        store.requestStop(row.id, 'timeout', 'scheduler')
        running++
        continue
      }
      if (row.stop_request && row.stop_requested_at !== null && now - row.stop_requested_at > config.stopGraceMs) {
        // Asked to stop and did not: kill, then settle here (an adopted worker has no exit event for us).
        kill(row)
        settle(row, 'worker did not stop in time and was killed')
        continue
      }
      // The lease: a live worker beats every HEARTBEAT_MS between units of work, however long the job runs.
      // Silence past the lease from a process that is gone or frozen means the job is lost (a frozen one is
      // killed; were it to wake first, its writes are fenced out). A process that is still runnable is only
      // starved of CPU, so it keeps its job until it has been silent for UNRESPONSIVE_LEASES leases.
      const silentMs = now - (row.heartbeat_at ?? 0)
      const pid = own?.process.pid ?? row.pid
      const runnable = state === 'running' || state === 'unknown' || state === 'unverified'
      if (silentMs > config.leaseMs && (!runnable || silentMs > UNRESPONSIVE_LEASES * config.leaseMs)) {
        const why = state === 'stopped' ? 'frozen' : state === 'gone' ? 'gone' : 'unresponsive'
        lose(row, `no heartbeat for ${Math.round(silentMs / 1000)} s (worker pid ${pid ?? 'unknown'} ${why})`)
        continue
      }
      running++
    }
    // Fork only for a job that is waiting: a worker forked on spec and killed again would wake this tick through
    // its exit, forever.
    for (let free = config.maxConcurrency - running; free > 0 && store.hasPending(); free--) {
      const worker = spares.shift() ?? (canFork() ? spawnWorker() : undefined)
      if (!worker) break // Workers die at boot: wait out the pause.
      const row = store.claimNext(worker.token, worker.process.pid)
      if (!row) {
        spares.unshift(worker)
        break
      }
      worker.jobId = row.id
      worker.lease = row.lease
      log.info({ jobId: row.id, event: 'claimed', attempt: row.attempts, worker: worker.token, workerPid: worker.process.pid }, 'job claimed')
    }
    // Booting costs a worker more than a tiny job does, so the next workers boot while the current ones
    // compute: a slot that frees up is refilled by a process that is already up.
    const wanted = !config.warmSpare ? 0 : store.hasPending() ? config.maxConcurrency : 1
    while (spares.length < wanted && canFork()) spares.push(spawnWorker())
    while (spares.length > wanted) {
      const dismissed = spares.pop() as Child
      dismissed.dismissed = true
      dismissed.process.kill('SIGTERM')
    }
    for (const spare of spares) if (!spare.booted && spareBooted(spare, now)) booted(spare)
    lastTickAt = now
  }

  /** Runs a tick soon, once, however many times it is called meanwhile. */
  function wake (): void {
    if (queued || stopping) return
    queued = true
    setImmediate(safeTick)
  }

  function safeTick (): void {
    try {
      tick()
    } catch (err) {
      log.error({ err }, 'scheduler tick failed')
    }
  }

  const waitFor = async (done: () => boolean, ms: number): Promise<boolean> => {
    const until = Date.now() + ms
    while (!done()) {
      if (Date.now() > until) return false
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return true
  }

  return {
    stats,
    /** Adopts what a previous server left running, then starts scheduling. */
    start (): void {
      const running = store.running()
      if (running.length > 0) log.info({ jobs: running.map((r) => r.id) }, 'found running jobs from a previous server; adopting them')
      timer = setInterval(safeTick, TICK_MS)
      timer.unref()
      wake()
    },

    /** Something changed (a submit, a cancel): look now rather than at the next tick. */
    wake,

    /** Pids of the worker processes this server forked and that have not exited. */
    childPids (): number[] {
      return [...children.values()].map((c) => c.process.pid).filter((p): p is number => p !== undefined)
    },

    /** When the last scheduling pass completed (epoch ms), for /readyz; null before the first. */
    lastTickAt (): number | null {
      return lastTickAt
    },

    /** Not ok while workers keep dying at boot (jobs cannot start), with the reason; for /readyz. */
    health (): SchedulerHealth {
      if (bootFailures < UNREADY_BOOT_FAILURES) return { ok: true }
      const wait = Math.max(0, Math.round((nextForkAt - Date.now()) / 1000))
      return { ok: false, reason: `workers die at boot: ${bootFailures} in a row (last: ${lastBootFailure}); next try in ${wait} s` }
    },

    /**
     * Graceful stop: no new claims, every running worker asked to checkpoint and give its job back, and any
     * worker still there after SHUTDOWN_GRACE_MS killed with its job released here. Leaves no child behind.
     */
    async stop (): Promise<void> {
      if (stopping) return
      stopping = true
      if (timer) clearInterval(timer)
      for (const idle of spares.splice(0)) {
        idle.dismissed = true
        idle.process.kill('SIGTERM')
      }
      const running = store.running()
      for (const row of running) {
        const state = workerState(row)
        // A worker that is no more cannot hand its job back: do it here, without waiting or signalling.
        if (!children.has(row.worker ?? '') && (state === 'gone' || state === 'foreign')) {
          store.settleStop(row, row.stop_request === 'cancel' || row.stop_request === 'timeout' ? row.stop_request : 'release', 'server shutdown; its worker was gone')
        } else store.requestStop(row.id, 'release', 'shutdown')
      }
      const released = await waitFor(() => store.running().length === 0, config.shutdownGraceMs)
      if (!released) {
        for (const row of store.running()) {
          kill(row)
          if (store.settleStop(row, row.stop_request ?? 'release', 'server shutdown; worker killed after the grace period')) {
            log.warn({ jobId: row.id }, 'worker did not release its job in time; killed, job back to pending')
          }
        }
      }
      for (const child of children.values()) child.process.kill('SIGKILL')
      await waitFor(() => children.size === 0, 2000)
      log.info({ released: running.map((r) => r.id) }, 'scheduler stopped')
    }
  }
}
