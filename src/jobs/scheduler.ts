import { type ChildProcess, fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Config, MAX_LEASE_MS, MIN_LEASE_MS } from '../config.js'
import type { Logger } from '../log.js'
import { checkProcess, hasFileOpen, type ProcessCheck } from '../process-identity.js'
import type { AsyncJobStore, LostOutcome, RunningJob } from '../store/job-store.js'
import { createNodeMembership, UNKNOWN_BOOT } from './node-membership.js'
import { EXIT_SELF_FENCED } from './self-fence.js'
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
 * Where forked workers keep V8's compiled code between starts. Node ≥ 22.1 reads NODE_COMPILE_CACHE (Node 20 ignores
 * it): the bundle, the mathjs core and the SQLite driver's JavaScript are then loaded as code instead of being
 * parsed and compiled again by every worker, ~10 ms of each start's CPU on Node 24 (docs/benchmarks.md, "Worker
 * start"). It sits beside the bundle in dist/, which only the installing user writes, and `npm run build` empties it
 * with each new bundle, so it holds one build's entries. An operator's own NODE_COMPILE_CACHE is kept, and Node's
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off. Not set when running from the TypeScript sources (tests).
 */
export const WORKER_COMPILE_CACHE = fileURLToPath(new URL('./.compile-cache', import.meta.url))

/** The compile-cache variable a worker is forked with (empty under the TypeScript sources). */
export function workerCompileCacheEnv (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (!WORKER_ENTRY.endsWith('.js')) return {}
  return { NODE_COMPILE_CACHE: env.NODE_COMPILE_CACHE || WORKER_COMPILE_CACHE }
}

/**
 * The server's own memory flags (`npm start`, scripts/server-flags.js): a heap limit and young generation sized for
 * the server, and on Node >= 22 two that keep it within its 120 MB under load (`--optimize-for-size`: V8 grows the
 * heap less; `--no-maglev`: no memory for the mid-tier compiler; docs/benchmarks.md, "2026-12-07, morning"). A
 * worker does not inherit them: at n = 2000 it needs a larger heap, and its compute is measured without them.
 * V8 spells a flag with '-' or '_' alike, and a negation as --no-, --no_ or --no.
 */
const SERVER_MEMORY_FLAG = /^--(max[-_]old[-_]space[-_]size|max[-_]semi[-_]space[-_]size|optimize[-_]for[-_]size|no[-_]?maglev)(=|$)/

/**
 * Node flags of a worker. A smaller young generation: the product allocates row arrays that die young, and V8's
 * default lets them pile up to ~270 MB at n = 1000; 4 MB semi-spaces keep the peak lower at no measurable speed
 * cost. `gc()` is exposed so a worker can collect right after writing a large checkpoint. The server's memory flags
 * are not inherited (SERVER_MEMORY_FLAG); any other flag of the server is. `--single-threaded`: V8
 * starts no helper threads of its own (concurrent compilation, parallel and concurrent GC), which a process that
 * lives for one job pays for more than it gains: ~20 ms less CPU per worker start on Node 24, ~10 on Node 20, and
 * the same GF/s for a long job (docs/benchmarks.md, "Worker start"). The job's compute threads are unaffected.
 */
export function workerExecArgv (parent: readonly string[] = process.execArgv): string[] {
  return [...parent.filter((arg) => !SERVER_MEMORY_FLAG.test(arg)), '--max-semi-space-size=4', '--expose-gc', '--single-threaded']
}

/** Flags that preload code into a process (an APM or tracing agent, say); a worker inherits them from its server. */
const PRELOAD_FLAG = /^(-r|--require|--import|--loader|--experimental-loader)(=|$)/

/**
 * Whether a worker needs NODE_EXTRA_CA_CERTS: when it may open a TLS connection, to PostgreSQL, from the code of a
 * user job type that loaded (the built-in types never do), or from code the operator preloads into the server and
 * so into every worker (`--require`, `--import` or `--loader`, on the command line or in NODE_OPTIONS). Otherwise
 * the worker goes without it: Node 20 reads and parses that whole file in every process at start, whether or not
 * TLS is ever used, ~45 ms of a tiny-job worker's ~195 ms of CPU here (docs/benchmarks.md, "2026-12-07"). Node 24
 * reads it at first use.
 */
export function workerNeedsExtraCaCerts (
  config: Pick<Config, 'databaseUrl'>,
  jobTypeModules: Readonly<Record<string, string>>,
  env: NodeJS.ProcessEnv = process.env,
  execArgv: readonly string[] = process.execArgv
): boolean {
  // NODE_OPTIONS may quote its values ("--import=file:///a b/x.mjs"): a quote before the flag is not part of it.
  const options = (env.NODE_OPTIONS ?? '').split(/\s+/).map((arg) => arg.replace(/^["']/, ''))
  const preloads = [...execArgv, ...options].some((arg) => PRELOAD_FLAG.test(arg))
  return config.databaseUrl !== undefined || Object.keys(jobTypeModules).length > 0 || preloads
}

/**
 * The part of the server's environment a worker inherits (the scheduler adds its NONSTOP_* settings to it), given
 * `workerNeedsExtraCaCerts`, which the scheduler decides once.
 */
export function inheritedEnv (keepExtraCaCerts: boolean, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const inherited = { ...env }
  if (!keepExtraCaCerts) delete inherited.NODE_EXTRA_CA_CERTS
  return inherited
}

/** A runnable worker silent for this many leases is taken as hung rather than starved of CPU. */
const UNRESPONSIVE_LEASES = 6

/** A lease read from the database, within LEASE_MS's own bounds (src/config.ts) whatever a row says. */
const clampLease = (ms: number): number => Math.min(Math.max(ms, MIN_LEASE_MS), MAX_LEASE_MS)

/** The lease of a job's current attempt, recorded at its claim; undefined when claimed by an older server (which
 *  records none: a lease_ms recorded for an earlier attempt is not this one's). */
const leaseOf = (row: JobRow): number | undefined =>
  (row.lease_ms && row.lease_ms_lease === row.lease ? clampLease(row.lease_ms) : undefined)

/** How often the scheduler looks at the table even when nothing told it to. */
const TICK_MS = 250

/** Name of the periodic slot under which one node at a time sweeps the jobs of other nodes. */
export const SWEEP_TASK = 'sweep-lost'

/** A failing pass is logged again at most this often while it keeps failing with the same error. */
const RELOG_TICK_FAILURE_MS = 10_000

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

/** A child's exit, settled by the next pass (never from the 'exit' listener: passes do not overlap). */
interface Exit { child: Child, code: number | null, signal: NodeJS.Signals | null }

/** Whether the scheduler can start jobs: false while workers keep dying at boot or passes fail (for /readyz). */
export interface SchedulerHealth { ok: boolean, reason?: string }

/** Counters the scheduler keeps for metrics and tests. */
export interface SchedulerStats {
  forks: number
  lost: number
  requeued: number
  killed: number
  /** Sweeps of other nodes' jobs this node ran (it held the periodic slot). */
  sweeps: number
  /** Passes that failed (the database unreachable, most likely). */
  tickFailures: number
}

export interface SchedulerOptions {
  /** The job store (src/store/open.ts: SQLite or PostgreSQL). */
  store: AsyncJobStore
  config: Config
  log: Logger
  /** This node's id (claims record it; only its jobs are watched through /proc); defaults to config.nodeId. */
  nodeId?: string
  /** Worker script to fork; defaults to the bundled worker, or the sibling worker module (chooseWorkerEntry). */
  workerEntry?: string
  /** Modules of the user job types (name → path), handed to every worker so it imports its job's. */
  jobTypeModules?: Readonly<Record<string, string>>
  /** How often some node sweeps other nodes' jobs (ms); defaults to a quarter of the lease, between 250 ms and 1 s. */
  sweepIntervalMs?: number
  /** This machine's boot id (tests); defaults to /proc/sys/kernel/random/boot_id. */
  bootId?: string
}

export type Scheduler = ReturnType<typeof createScheduler>

/**
 * Starts jobs and watches them, for one node of possibly several sharing the database.
 *
 * At most MAX_CONCURRENCY of this node's workers run at once, counted from the table, so workers adopted from a
 * previous server of this node count too. It forks one process per job (plus, optionally, booted spares waiting
 * for the next job), tells it its job only by writing the claim (with this node's id) into the database, and sees
 * every end: the exit of its own children, and for any worker a heartbeat older than the lease, by the database's
 * clock.
 *
 * Whose job is whose: a job is this node's to watch through /proc (and to signal) only when its `node` is this
 * node's id and its worker is of this machine's current boot: forked by this scheduler, or adopted at start from a
 * previous server of this node whose row in the nodes table had this boot id. Every other running job (another
 * node's, or this node's from an earlier boot) is decided from the database alone, see sweepJob().
 *
 * Passes are asynchronous and never overlap. A pass that fails (the database unreachable) is logged, reported by
 * health() and tried again at the next tick; it never crashes the server.
 */
export function createScheduler ({ store, config, log, nodeId = config.nodeId, workerEntry: givenEntry, jobTypeModules = {}, sweepIntervalMs, bootId: givenBoot }: SchedulerOptions) {
  let workerEntry = givenEntry ?? WORKER_ENTRY
  if (givenEntry === undefined) {
    const chosen = chooseWorkerEntry()
    workerEntry = chosen.entry
    if (!chosen.bundled && WORKER_ENTRY.endsWith('.js')) log.warn({ why: chosen.why }, 'forking the plain worker module, not the bundle: each worker starts with more CPU')
  }
  const keepExtraCaCerts = workerNeedsExtraCaCerts(config, jobTypeModules)
  if (process.env.NODE_EXTRA_CA_CERTS && !keepExtraCaCerts) log.info('workers start without NODE_EXTRA_CA_CERTS: on SQLite, with only the built-in job types and no preloaded code, none opens a TLS connection')
  const sweepEvery = sweepIntervalMs ?? Math.min(1000, Math.max(TICK_MS, Math.round(config.leaseMs / 4)))
  const membership = createNodeMembership({ store, nodeId, log, boot: givenBoot, leaseMs: config.leaseMs })
  const children = new Map<string, Child>()
  const stats: SchedulerStats = { forks: 0, lost: 0, requeued: 0, killed: 0, sweeps: 0, tickFailures: 0 }
  /** Booted workers waiting for a job: one while the queue is empty, one per slot while jobs wait. */
  const spares: Child[] = []
  /** Worker tokens whose processes are of this node and this boot: forked here, or adopted at start. */
  const local = new Set<string>()
  /** Exits not settled yet, by worker token. */
  const exits = new Map<string, Exit>()
  let timer: NodeJS.Timeout | null = null
  let queued = false
  let started: Promise<void> | null = null
  let ready = false
  let stopping = false
  let stopped: Promise<void> | null = null
  let ticking: Promise<void> | null = null
  let again = false
  let lastTickAt: number | null = null
  let lastSweepAt = 0
  /** The failure of the last pass (cleared by a pass that succeeds), for health(). */
  let tickFailure: { message: string, since: number, count: number, loggedAt: number } | null = null
  /** Workers that died at boot in a row, why the last one did, and when the next fork may happen. */
  let bootFailures = 0
  let lastBootFailure = ''
  let nextForkAt = 0
  /** A worker forked after a failure at boot whose fate is not known yet: no other fork until it is. */
  let probe: Child | null = null

  /** Read through a call inside loops that await: stop() may set it meanwhile. */
  const halted = (): boolean => stopping

  /** Whether this node watches the row's worker through /proc and may signal it (see createScheduler). */
  function isLocal (row: JobRow): boolean {
    if (row.worker === null || !local.has(row.worker)) return false
    // A null node is a claim made before nodes were recorded (migrations/007): on SQLite, one server per file, it
    // was this server's predecessor's.
    return row.node === nodeId || (row.node === null && store.kind === 'sqlite')
  }

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
   * a starved machine, where a worker that dies at boot can take seconds to do so; only without /proc, or on
   * PostgreSQL (no file to see open), is it used.
   */
  function spareBooted (spare: Child, now: number): boolean {
    const pid = spare.process.pid
    const opened = config.databaseUrl !== undefined ? undefined : pid === undefined ? false : hasFileOpen(pid, config.dbPath)
    return opened ?? now - spare.forkedAt >= BOOTED_AFTER_MS
  }

  function spawnWorker (): Child {
    const token = randomBytes(8).toString('hex')
    const env: NodeJS.ProcessEnv = {
      ...inheritedEnv(keepExtraCaCerts),
      ...workerCompileCacheEnv(),
      [WORKER_ENV.dbPath]: config.dbPath,
      [WORKER_ENV.leaseMs]: String(config.leaseMs),
      [WORKER_ENV.heartbeatMs]: String(config.heartbeatMs),
      [WORKER_ENV.checkpointMs]: String(config.checkpointMs),
      [WORKER_ENV.nice]: String(config.workerNice),
      [WORKER_ENV.jobTypeModules]: JSON.stringify(jobTypeModules),
      LOG_LEVEL: config.logLevel,
      LOG_FILE: config.logFile ?? ''
    }
    // The worker uses the database its server uses: never one named by a variable this server merely inherited.
    if (config.databaseUrl !== undefined) env[WORKER_ENV.databaseUrl] = config.databaseUrl
    else delete env[WORKER_ENV.databaseUrl]
    const child = fork(workerEntry, [token], { execArgv: workerExecArgv(), env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const entry: Child = { token, process: child, forkedAt: Date.now() }
    children.set(token, entry)
    local.add(token)
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
    exits.set(child.token, { child, code, signal })
    wake()
  }

  /**
   * Settles a child's exit. A database failure here (disk full, I/O error, PostgreSQL unreachable) is logged and left
   * to a later pass, which finds the row running with its worker gone.
   */
  async function settleExit ({ child, code, signal }: Exit): Promise<void> {
    try {
      const how = signal ? `killed by ${signal}` : `exited with code ${code}`
      if (child.jobId !== undefined && child.lease !== undefined) {
        const row = await store.get(child.jobId)
        const current = row && row.status === 'running' && row.lease === child.lease && row.worker === child.token ? row : undefined
        if (code === 0 || (row && !current)) booted(child)
        else if (current && current.pid === null && code !== EXIT_DATABASE_BUSY && !stopping) failedAtBoot(child, `worker ${how} before its first heartbeat`)
        if (current) {
          // The worker left without writing an end: settle what was asked of it, give back an attempt the
          // database took from it, or count the attempt as lost.
          // A worker that left because the database refused or could not take its writes (busy, or unreachable past
          // its fence budget) did nothing wrong: the attempt is given back, not charged.
          if (current.stop_request) await settle(current, `worker stopped (${signal ?? `code ${code}`})`)
          else if (code === EXIT_DATABASE_BUSY || code === EXIT_SELF_FENCED) await giveBack(current, code === EXIT_SELF_FENCED ? 'database unreachable' : 'database busy')
          else await lose(current, `worker ${how}`, { signal: false })
        }
      } else if (!stopping && !child.dismissed) {
        if (code === 0 && !signal) booted(child)
        else failedAtBoot(child, `idle worker ${how}`)
      }
      // Forgotten only once settled: an exit whose settlement failed (the database down) is tried again next pass,
      // rather than found later as a worker gone and charged an attempt.
      exits.delete(child.token)
    } catch (err) {
      log.error({ err, worker: child.token, jobId: child.jobId }, 'could not settle the exit of a worker; the next pass will')
    }
  }

  async function settleExits (): Promise<void> {
    for (const exit of [...exits.values()]) await settleExit(exit)
  }

  async function settle (row: JobRow, why: string): Promise<void> {
    if (!row.stop_request || !await store.settleStop(row, row.stop_request, why)) return
    const event = row.stop_request === 'release' ? 'released' : row.stop_request === 'cancel' ? 'canceled' : 'failed'
    log.info({ jobId: row.id, event, reason: row.stop_request, why, node: row.node }, `job ${event}`)
  }

  async function giveBack (row: JobRow, reason: 'database busy' | 'database unreachable'): Promise<void> {
    const why = reason === 'database busy' ? 'worker found the database locked for too long' : 'worker could not write to the database for most of its lease'
    if (!await store.giveBack(row, why)) return
    log.warn({ jobId: row.id, event: 'requeued', workerPid: row.pid, reason }, `worker left its job: ${reason}; back to pending, no attempt charged`)
  }

  /**
   * The attempt is lost: back to pending or failed. With `ifSilentForMs`, only if the heartbeat is still that old
   * by the database's clock ('alive' otherwise: the worker beat meanwhile and keeps its job). With `signal`, a
   * worker of this node that is still there (frozen, or running but silent) is killed, so it can never compete
   * with the next attempt for CPU or memory.
   */
  async function lose (row: JobRow, reason: string, { signal, ifSilentForMs }: { signal: boolean, ifSilentForMs?: number }): Promise<LostOutcome> {
    const outcome = await store.markLost(row, reason, config.maxAttempts, ifSilentForMs)
    if (outcome === 'gone' || outcome === 'alive') return outcome
    stats.lost++
    if (outcome === 'requeued') stats.requeued++
    if (signal && kill(row)) log.warn({ jobId: row.id, workerPid: row.pid }, 'lost worker was still there; killed')
    const checkpoint = await store.checkpointInfo(row.id).catch(() => undefined)
    const fields = { jobId: row.id, attempt: row.attempts, workerPid: row.pid, node: row.node, reason, resumeFromStep: checkpoint?.step ?? 0 }
    if (outcome === 'failed') log.error({ ...fields, event: 'failed' }, 'job failed: no attempts left')
    else log.warn({ ...fields, event: 'requeued' }, 'job lost its worker; back to pending')
    return outcome
  }

  /**
   * What the worker of a running row of this node is now. Our own children are known by their handle; an adopted
   * worker only by the pid and start time it recorded with its first heartbeat and the token in its command line:
   * a pid that now names another process means the worker is gone.
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
   * SIGKILL to the worker of a row of this node: our own child through its handle, an adopted one only once its
   * identity is verified (never a process that merely has the same pid). Another node's worker, or one of an
   * earlier boot, is never signalled: its pid means nothing on this machine. Returns whether a signal was sent.
   */
  function kill (row: JobRow): boolean {
    if (!isLocal(row)) return false
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

  const secondsOf = (ms: number): number => Math.round(ms / 1000)

  /**
   * One running job of this node (a worker of this boot): time limit, overdue stop, lost lease. Returns whether its
   * worker still counts against MAX_CONCURRENCY.
   */
  async function watchLocal ({ row, silentMs, runMs, stopWaitMs }: RunningJob): Promise<boolean> {
    const own = row.worker ? children.get(row.worker) : undefined
    if (own && row.pid !== null) booted(own)
    const state = workerState(row)
    const timedOut = row.timeout_ms !== null && runMs !== null && runMs >= row.timeout_ms
    if (!own && (state === 'gone' || state === 'foreign')) {
      // An adopted worker (or a child whose exit could not be settled) that is no more (its pid gone, or now another
      // process's): carry out what was asked of it here, or resume the job at once. Nothing is signalled.
      const request = row.stop_request === 'cancel' || row.stop_request === 'timeout' ? row.stop_request : timedOut ? 'timeout' : row.stop_request
      const why = state === 'gone' ? `worker pid ${row.pid} is gone` : `pid ${row.pid} now belongs to another process`
      if (request) await settle({ ...row, stop_request: request }, why)
      else await lose(row, why, { signal: false })
      return false
    }
    // The run-time limit, a separate clock from the lease: past it the worker is asked to stop (and is killed
    // below if it does not); a pending release is overridden.
    if (timedOut && (row.stop_request === null || row.stop_request === 'release')) {
      await store.requestStop(row.id, 'timeout', 'scheduler')
      return true
    }
    if (row.stop_request && stopWaitMs !== null && stopWaitMs > config.stopGraceMs) {
      // Asked to stop and did not: kill, then settle here (an adopted worker has no exit event for us).
      kill(row)
      await settle(row, 'worker did not stop in time and was killed')
      return false
    }
    // The lease: a live worker beats every HEARTBEAT_MS between units of work, however long the job runs.
    // Silence past the lease from a process that is gone or frozen means the job is lost (a frozen one is
    // killed; were it to wake first, its writes are fenced out). A process that is still runnable is only
    // starved of CPU, so it keeps its job until it has been silent for UNRESPONSIVE_LEASES leases. The loss is
    // re-checked in the database: a worker that beat since the ages were read keeps its job.
    const silent = silentMs ?? Infinity
    const pid = own?.process.pid ?? row.pid
    const runnable = state === 'running' || state === 'unknown' || state === 'unverified'
    // The attempt's own lease: an adopted worker forked by this node's previous process keeps the lease it had.
    const lease = leaseOf(row) ?? config.leaseMs
    if (silent > lease && (!runnable || silent > UNRESPONSIVE_LEASES * lease)) {
      const why = state === 'stopped' ? 'frozen' : state === 'gone' ? 'gone' : 'unresponsive'
      const outcome = await lose(row, `no heartbeat for ${secondsOf(silent)} s (worker pid ${pid ?? 'unknown'} ${why})`, { signal: true, ifSilentForMs: lease })
      return outcome === 'alive'
    }
    return true
  }

  /**
   * One running job this node does not watch through /proc: another node's, or this node's from an earlier boot.
   * Decided from the database alone, and only once its heartbeat is older than the lease: while it beats, its own
   * node applies its time limit and its stop grace (it is the one that can signal the worker), so nothing here
   * touches it. Once silent past the lease, its worker (and maybe its node) is taken as gone, and this sweep does
   * what its node would have: a pending cancel or time limit (or one that has passed) is settled, a pending release
   * carried out, anything else requeued with markLost(…, ifSilentForMs), which keeps the job with a worker that beat
   * meanwhile. A node that is itself alive (its row beats) watches a silent but runnable worker for up to
   * UNRESPONSIVE_LEASES leases before it gives up on it; other nodes wait as long for its jobs, so that they never
   * take over a job its node still keeps. The lease is the attempt's own (recorded at its claim: the LEASE_MS its
   * worker was forked with and fences itself on), else its node's (recorded in the nodes table), never this node's:
   * nodes configured with different leases, or a node restarted with another one, never take a job from a worker
   * still inside its own lease. No pid of these rows is ever read or signalled.
   */
  async function sweepJob ({ row, silentMs, runMs }: RunningJob, liveNodes: ReadonlySet<string>, leases: ReadonlyMap<string, number>): Promise<void> {
    const silent = silentMs ?? Infinity
    const nodeAlive = row.node !== null && row.node !== nodeId && liveNodes.has(row.node)
    const lease = leaseOf(row) ?? ((row.node !== null && leases.get(row.node)) || config.leaseMs)
    const patience = nodeAlive ? UNRESPONSIVE_LEASES * lease : lease
    const timedOut = row.timeout_ms !== null && runMs !== null && runMs >= row.timeout_ms
    if (silent <= patience) {
      // A worker that still beats though its node is gone (it outlives its server by design) has no node to apply
      // its time limit: the request is written here, and the worker obeys it at its next heartbeat.
      if (!nodeAlive && timedOut && row.stop_request === null && await store.requestStop(row.id, 'timeout', 'scheduler')) {
        log.warn({ jobId: row.id, event: 'timeout', node: row.node }, 'job over its time limit on a node that is gone; its worker is asked to stop')
      }
      return
    }
    const request = row.stop_request === 'cancel' || row.stop_request === 'timeout' ? row.stop_request : timedOut ? 'timeout' : row.stop_request
    const why = `no heartbeat for ${secondsOf(silent)} s (worker of node ${row.node ?? 'unknown'})`
    // settleStop has no heartbeat re-check: a worker that beats between the read and the settlement finds its next
    // write fenced out and stops; the job ends as it was asked to anyway.
    if (request) await settle({ ...row, stop_request: request }, why)
    else await lose(row, why, { signal: false, ifSilentForMs: patience })
  }

  /** Other nodes' jobs, once per sweep interval across every node (the periodic slot SWEEP_TASK). */
  async function sweep (others: RunningJob[]): Promise<void> {
    if (Date.now() - lastSweepAt < sweepEvery) return
    lastSweepAt = Date.now()
    if (!await store.claimPeriodic(SWEEP_TASK, sweepEvery)) return
    stats.sweeps++
    if (others.length === 0) return
    let liveNodes = new Set<string>()
    const leases = new Map<string, number>()
    try {
      const nodes = await store.nodes()
      // Within LEASE_MS's own bounds (config.ts), whatever a row says.
      for (const n of nodes) if (n.lease_ms) leases.set(n.node_id, clampLease(n.lease_ms))
      liveNodes = new Set(nodes.filter((n) => n.silent_ms <= (leases.get(n.node_id) ?? config.leaseMs)).map((n) => n.node_id))
    } catch {
      // Without the nodes table (not on this store yet), every other node's job gets the lease alone.
    }
    for (const job of others) await sweepJob(job, liveNodes, leases)
  }

  /** One pass: exits, this node's running jobs, the sweep of the others, then new claims and spares. */
  async function tick (): Promise<void> {
    await settleExits()
    let running = 0
    const others: RunningJob[] = []
    const seen = new Set<string>()
    for (const job of await store.runningWithAges()) {
      if (stopping) return
      const { row } = job
      if (row.worker !== null) seen.add(row.worker)
      const exit = row.worker === null ? undefined : exits.get(row.worker)
      if (exit) {
        // Its worker exited while this pass ran: settle that exit, which knows how it ended.
        await settleExit(exit)
        continue
      }
      if (!isLocal(row)) others.push(job)
      else if (await watchLocal(job)) running++
    }
    for (const token of local) if (!seen.has(token) && !children.has(token) && !exits.has(token)) local.delete(token)
    await sweep(others)
    // Fork only for a job that is waiting: a worker forked on spec and killed again would wake this tick through
    // its exit, forever.
    for (let free = config.maxConcurrency - running; free > 0 && !halted() && await store.hasPending(); free--) {
      const worker = spares.shift() ?? (canFork() ? spawnWorker() : undefined)
      if (!worker) break // Workers die at boot: wait out the pause.
      let row: JobRow | undefined
      try {
        row = await store.claimNext(worker.token, worker.process.pid, nodeId, config.leaseMs)
      } catch (err) {
        spares.unshift(worker)
        throw err
      }
      if (!row) {
        spares.unshift(worker)
        break
      }
      worker.jobId = row.id
      worker.lease = row.lease
      log.info({ jobId: row.id, event: 'claimed', attempt: row.attempts, worker: worker.token, workerPid: worker.process.pid, node: nodeId }, 'job claimed')
    }
    if (stopping) return
    // Booting costs a worker more than a tiny job does, so the next workers boot while the current ones
    // compute: a slot that frees up is refilled by a process that is already up.
    const wanted = !config.warmSpare ? 0 : await store.hasPending() ? config.maxConcurrency : 1
    if (stopping) return
    while (spares.length < wanted && canFork()) spares.push(spawnWorker())
    while (spares.length > wanted) {
      const dismissed = spares.pop() as Child
      dismissed.dismissed = true
      dismissed.process.kill('SIGTERM')
    }
    const now = Date.now()
    for (const spare of spares) if (!spare.booted && spareBooted(spare, now)) booted(spare)
  }

  /** A pass that never throws: a failure is logged (not every time while it repeats) and kept for health(). */
  async function guardedTick (): Promise<void> {
    try {
      await tick()
      if (tickFailure) log.info({ failedPasses: tickFailure.count, forMs: Date.now() - tickFailure.since }, 'scheduler passes succeed again')
      tickFailure = null
    } catch (err) {
      stats.tickFailures++
      const message = err instanceof Error ? err.message : String(err)
      const now = Date.now()
      if (!tickFailure || tickFailure.message !== message || now - tickFailure.loggedAt >= RELOG_TICK_FAILURE_MS) {
        log.error({ err, failedPasses: (tickFailure?.count ?? 0) + 1 }, 'scheduler pass failed; trying again at the next tick')
        tickFailure = { message, since: tickFailure?.since ?? now, count: (tickFailure?.count ?? 0) + 1, loggedAt: now }
      } else tickFailure.count++
    }
    // A failed pass is a pass too: /readyz then says why through health(), not that the scheduler is stuck.
    lastTickAt = Date.now()
  }

  /** Runs a pass now, or right after the one in progress: never two at once. */
  function runTick (): void {
    if (stopping || !ready) return
    if (ticking) {
      again = true
      return
    }
    ticking = (async () => {
      do {
        again = false
        await guardedTick()
      } while (again && !halted())
    })().finally(() => { ticking = null })
  }

  /** Runs a tick soon, once, however many times it is called meanwhile. */
  function wake (): void {
    if (queued || stopping) return
    queued = true
    setImmediate(() => {
      queued = false
      runTick()
    })
  }

  /**
   * Registers the node and decides which running jobs of this node are adopted, i.e. watched through /proc: those of
   * this node's previous server when its row in the nodes table has this machine's boot id (its workers' pids are
   * of this boot). Without that row (or where it cannot be read) only SQLite adopts (one server per file, and a pid
   * is trusted only with its start time and token); PostgreSQL leaves such jobs to the database-only sweep.
   */
  async function init (): Promise<void> {
    const previous = await membership.start()
    const sameBoot = previous ? previous.boot_id === membership.boot && membership.boot !== UNKNOWN_BOOT : store.kind === 'sqlite'
    let running: JobRow[] = []
    try {
      running = await store.running()
    } catch (err) {
      log.error({ err }, 'could not read the running jobs at start; jobs of a previous server are left to the lease')
    }
    const ours = running.filter((r) => r.node === nodeId || (r.node === null && store.kind === 'sqlite'))
    if (ours.length === 0) return
    if (sameBoot) {
      for (const row of ours) if (row.worker !== null) local.add(row.worker)
      log.info({ jobs: ours.map((r) => r.id), nodeId }, 'found running jobs from a previous server; adopting them')
    } else {
      log.warn({ jobs: ours.map((r) => r.id), nodeId }, 'found running jobs of this node from an earlier boot (or an unknown one); they are taken over once their heartbeats are older than the lease')
    }
  }

  const waitFor = async (done: () => Promise<boolean>, ms: number): Promise<boolean> => {
    const until = Date.now() + ms
    for (;;) {
      try {
        if (await done()) return true
      } catch (err) {
        log.error({ err }, 'scheduler stop: could not read the running jobs; waiting')
      }
      if (Date.now() > until) return false
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** This node's running jobs (those its workers of this boot hold). */
  const localRunning = async (): Promise<JobRow[]> => (await store.running()).filter(isLocal)

  async function shutdown (): Promise<void> {
    if (timer) clearInterval(timer)
    if (started) await started
    else {
      // Stopped without a start: still learn which running jobs are this node's, to release them.
      try {
        await init()
      } catch (err) {
        log.error({ err }, 'scheduler stop: could not adopt running jobs')
      }
    }
    if (ticking) await ticking
    for (const idle of spares.splice(0)) {
      idle.dismissed = true
      idle.process.kill('SIGTERM')
    }
    await settleExits()
    let running: JobRow[] = []
    try {
      running = await localRunning()
    } catch (err) {
      log.error({ err }, 'scheduler stop: could not read the running jobs; workers are killed after the grace period')
    }
    for (const row of running) {
      try {
        const state = workerState(row)
        // A worker that is no more cannot hand its job back: do it here, without waiting or signalling.
        if (!children.has(row.worker ?? '') && (state === 'gone' || state === 'foreign')) {
          await store.settleStop(row, row.stop_request === 'cancel' || row.stop_request === 'timeout' ? row.stop_request : 'release', 'server shutdown; its worker was gone')
        } else await store.requestStop(row.id, 'release', 'shutdown')
      } catch (err) {
        log.error({ err, jobId: row.id }, 'scheduler stop: could not ask a worker to release its job')
      }
    }
    const released = await waitFor(async () => {
      await settleExits()
      return (await localRunning()).length === 0
    }, config.shutdownGraceMs)
    if (!released) {
      let left: JobRow[] = []
      try {
        left = await localRunning()
      } catch (err) {
        log.error({ err }, 'scheduler stop: could not read the running jobs; killing every worker')
      }
      for (const row of left) {
        kill(row)
        try {
          if (await store.settleStop(row, row.stop_request ?? 'release', 'server shutdown; worker killed after the grace period')) {
            log.warn({ jobId: row.id }, 'worker did not release its job in time; killed, job back to pending')
          }
        } catch (err) {
          log.error({ err, jobId: row.id }, 'scheduler stop: could not release the job of a killed worker')
        }
      }
    }
    for (const child of children.values()) child.process.kill('SIGKILL')
    await waitFor(async () => children.size === 0, 2000)
    await settleExits()
    await membership.stop()
    log.info({ released: running.map((r) => r.id) }, 'scheduler stopped')
  }

  return {
    stats,
    /** This node's id, as claims record it. */
    nodeId,
    /**
     * Registers the node, adopts what a previous server of this node left running, then starts scheduling. The
     * promise (never rejected) settles once the first pass is scheduled; callers need not wait for it.
     */
    start (): Promise<void> {
      started ??= (async () => {
        try {
          await init()
        } catch (err) {
          log.error({ err }, 'scheduler start: could not register the node or adopt running jobs')
        }
        if (stopping) return
        ready = true
        timer = setInterval(runTick, TICK_MS)
        timer.unref()
        wake()
      })()
      return started
    },

    /** Something changed (a submit, a cancel): look now rather than at the next tick. */
    wake,

    /** Pids of the worker processes this server forked and that have not exited. */
    childPids (): number[] {
      return [...children.values()].map((c) => c.process.pid).filter((p): p is number => p !== undefined)
    },

    /** When the last scheduling pass ended, failed or not (epoch ms), for /readyz; null before the first. */
    lastTickAt (): number | null {
      return lastTickAt
    },

    /** Not ok while passes fail (the database unreachable) or workers keep dying at boot, with the reason; for /readyz. */
    health (): SchedulerHealth {
      if (tickFailure) {
        const forS = secondsOf(Date.now() - tickFailure.since)
        return { ok: false, reason: `scheduler passes fail: ${tickFailure.message} (${tickFailure.count} in a row, for ${forS} s)` }
      }
      if (bootFailures < UNREADY_BOOT_FAILURES) return { ok: true }
      const wait = Math.max(0, secondsOf(nextForkAt - Date.now()))
      return { ok: false, reason: `workers die at boot: ${bootFailures} in a row (last: ${lastBootFailure}); next try in ${wait} s` }
    },

    /**
     * Graceful stop: no new claims, every running worker of this node asked to checkpoint and give its job back,
     * and any worker still there after SHUTDOWN_GRACE_MS killed with its job released here; then the node leaves
     * the nodes table. Leaves no child behind. Other nodes' jobs are not touched.
     */
    stop (): Promise<void> {
      if (!stopped) {
        stopping = true
        stopped = shutdown()
      }
      return stopped
    }
  }
}
