import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Config } from '../config.js'
import type { Logger } from '../log.js'
import type { JobStore } from './store.js'
import { type JobRow, WORKER_ENV } from './types.js'

/** The worker entry beside this module, with the extension this process runs (.ts under tests, .js in dist/). */
export const WORKER_ENTRY = fileURLToPath(new URL(`./worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url))

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

/** A worker process this server forked. */
interface Child {
  token: string
  process: ChildProcess
  forkedAt: number
  /** Job and lease it was given; unset while it waits as a spare. */
  jobId?: number
  lease?: number
}

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
  /** Worker script to fork; defaults to the sibling worker module. */
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
export function createScheduler ({ store, config, log, workerEntry = WORKER_ENTRY, jobTypeModules = {} }: SchedulerOptions) {
  const children = new Map<string, Child>()
  const stats: SchedulerStats = { forks: 0, lost: 0, requeued: 0, killed: 0 }
  /** Booted workers waiting for a job: one while the queue is empty, one per slot while jobs wait. */
  const spares: Child[] = []
  let timer: NodeJS.Timeout | null = null
  let queued = false
  let stopping = false
  let lastTickAt: number | null = null

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
    stats.forks++
    child.on('error', (err) => log.error({ err, worker: token }, 'worker process error'))
    child.on('exit', (code, signal) => onExit(entry, code, signal))
    return entry
  }

  function onExit (child: Child, code: number | null, signal: NodeJS.Signals | null): void {
    children.delete(child.token)
    const idle = spares.indexOf(child)
    if (idle >= 0) spares.splice(idle, 1)
    if (child.jobId !== undefined && child.lease !== undefined) {
      const row = store.get(child.jobId)
      if (row && row.status === 'running' && row.lease === child.lease) {
        // The worker left without writing an end: settle what was asked of it, or count the attempt as lost.
        if (row.stop_request) settle(row, `worker stopped (${signal ?? `code ${code}`})`)
        else lose(row, signal ? `worker killed by ${signal}` : `worker exited with code ${code}`)
      }
    } else if (!stopping && (code !== 0 || signal)) {
      log.warn({ worker: child.token, code, signal }, 'idle worker exited')
    }
    wake()
  }

  function settle (row: JobRow, why: string): void {
    if (!row.stop_request || !store.settleStop(row.id, row.lease, row.stop_request)) return
    const event = row.stop_request === 'release' ? 'released' : row.stop_request === 'cancel' ? 'canceled' : 'failed'
    log.info({ jobId: row.id, event, reason: row.stop_request, why }, `job ${event}`)
  }

  function lose (row: JobRow, reason: string): void {
    const outcome = store.markLost(row.id, row.lease, reason, config.maxAttempts)
    if (outcome === 'gone') return
    stats.lost++
    if (outcome === 'requeued') stats.requeued++
    const checkpoint = store.checkpointInfo(row.id)
    const fields = { jobId: row.id, attempt: row.attempts, workerPid: row.pid, reason, resumeFromStep: checkpoint?.step ?? 0 }
    if (outcome === 'failed') log.error({ ...fields, event: 'failed' }, 'job failed: no attempts left')
    else log.warn({ ...fields, event: 'requeued' }, 'job lost its worker; back to pending')
  }

  function kill (row: JobRow): void {
    const own = row.worker ? children.get(row.worker) : undefined
    const pid = own?.process.pid ?? row.pid
    if (!pid) return
    try {
      process.kill(pid, 'SIGKILL')
      stats.killed++
    } catch {
      // Already gone.
    }
  }

  /** Whether a worker process can still make progress: 'stopped' is a frozen one (SIGSTOP, a debugger). */
  function processState (pid: number): 'alive' | 'stopped' | 'gone' {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
      if (state === 'Z' || state === 'X') return 'gone'
      return state === 'T' || state === 't' ? 'stopped' : 'alive'
    } catch {
      // No /proc here, or no such process: ask the kernel the portable way.
      try {
        process.kill(pid, 0)
        return 'alive'
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'EPERM' ? 'alive' : 'gone'
      }
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
      // The run-time limit, a separate clock from the lease: past it the worker is asked to stop (and is killed
      // below if it does not); a pending release is overridden.
      if (row.timeout_ms !== null && row.started_at !== null && now >= row.started_at + row.timeout_ms &&
        (row.stop_request === null || row.stop_request === 'release')) {
        store.requestStop(row.id, 'timeout')
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
      // Silence past the lease from a process that is gone or frozen means the job is lost (a frozen one that
      // wakes finds its lease moved on and writes nothing). A process that is still runnable is only starved
      // of CPU, so it keeps its job until it has been silent for UNRESPONSIVE_LEASES leases.
      const silentMs = now - (row.heartbeat_at ?? 0)
      const pid = own?.process.pid ?? row.pid
      const state = pid ? processState(pid) : 'alive'
      if (state === 'gone' && !own) {
        lose(row, `worker pid ${pid} is gone`)
        continue
      }
      if (silentMs > config.leaseMs && (state !== 'alive' || silentMs > UNRESPONSIVE_LEASES * config.leaseMs)) {
        const why = state === 'stopped' ? 'frozen' : state === 'gone' ? 'gone' : 'unresponsive'
        lose(row, `no heartbeat for ${Math.round(silentMs / 1000)} s (worker pid ${pid ?? 'unknown'} ${why})`)
        continue
      }
      running++
    }
    // Fork only for a job that is waiting: a worker forked on spec and killed again would wake this tick through
    // its exit, forever.
    for (let free = config.maxConcurrency - running; free > 0 && store.hasPending(); free--) {
      const worker = spares.shift() ?? spawnWorker()
      const row = store.claimNext(worker.token)
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
    while (spares.length < wanted) spares.push(spawnWorker())
    while (spares.length > wanted) spares.pop()?.process.kill('SIGTERM')
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

    /**
     * Graceful stop: no new claims, every running worker asked to checkpoint and give its job back, and any
     * worker still there after SHUTDOWN_GRACE_MS killed with its job released here. Leaves no child behind.
     */
    async stop (): Promise<void> {
      if (stopping) return
      stopping = true
      if (timer) clearInterval(timer)
      for (const idle of spares.splice(0)) idle.process.kill('SIGTERM')
      const running = store.running()
      for (const row of running) store.requestStop(row.id, 'release')
      const released = await waitFor(() => store.running().length === 0, config.shutdownGraceMs)
      if (!released) {
        for (const row of store.running()) {
          kill(row)
          if (store.settleStop(row.id, row.lease, row.stop_request ?? 'release')) {
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
