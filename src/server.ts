/**
 * The only entry point that listens. loadConfig → open and migrate the database (SQLite at DB_PATH, or PostgreSQL at
 * DATABASE_URL shared with other nodes) → scheduler → HTTP → listen.
 * SIGTERM / SIGINT: stop accepting, workers checkpoint and give their jobs back, database closed, exit 0.
 */
import { type Config, ConfigError, loadConfig } from './config.js'
import { startWalCheckpoints } from './db.js'
import { buildApp } from './http/app.js'
import { loadJobTypes } from './job-types/catalog.js'
import { createScheduler } from './jobs/scheduler.js'
import { createLogger } from './log.js'
import { acquireServerLock, LOCK_HEARTBEAT_MS, type ServerLock, ServerLockHeldError } from './server-lock.js'
import { openStoresWaiting, type Stores } from './store/open.js'
import { hostname } from 'node:os'
import { NODE_BEAT_MS } from './jobs/node-membership.js'
import { bootId, processExists } from './process-identity.js'

let config: Config
try {
  config = loadConfig()
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`nonstop: invalid configuration: ${err.message}\n`)
  process.exit(1)
}

const log = createLogger(config)
let stores: Stores
try {
  stores = await openStoresWaiting(config, {
    role: 'server',
    leaseMs: config.leaseMs,
    // An idle pooled connection broken by a PostgreSQL restart: the pool replaces it; the next query says more.
    onError: (err) => log.warn({ err }, 'a PostgreSQL connection was lost; it will be replaced')
  }, (err, attempt, pauseMs) => {
    log.warn({ err: { code: (err as { code?: unknown }).code, message: err.message }, attempt, retryInMs: pauseMs, waitSeconds: config.dbWaitSeconds },
      'PostgreSQL is not accepting connections yet; trying again')
  })
} catch (err) {
  log.fatal({ err }, 'cannot open the database')
  process.stderr.write(`nonstop: cannot open the database: ${(err as Error).message}\n`)
  process.exit(1)
}
const where = stores.kind === 'sqlite' ? { dbPath: config.dbPath } : { database: 'postgres', nodeId: config.nodeId }
if (stores.applied.length > 0) log.info({ applied: stores.applied, ...where }, 'database migrated')

// SQLite: one server per database file, held before any job is looked at: a second one refuses here, having changed
// nothing. PostgreSQL is shared by several nodes on purpose; the nodes table lists them.
const db = stores.sqlite
let lock: ServerLock | undefined
let lockTimer: NodeJS.Timeout | undefined
if (db) {
  try {
    lock = acquireServerLock(db)
  } catch (err) {
    if (!(err instanceof ServerLockHeldError)) throw err
    log.fatal({ holder: err.holder, dbPath: config.dbPath }, err.message)
    process.stderr.write(`nonstop: ${err.message} (DB_PATH=${config.dbPath})\n`)
    db.close()
    process.exit(1)
  }
  const held = lock
  lockTimer = setInterval(() => {
    try {
      if (held.refresh()) return
      // Only a server that found this one silent for long, from another host, takes the row: it schedules now.
      log.fatal('another server has taken over this database; exiting without touching its jobs')
      process.exit(1)
    } catch (err) {
      log.error({ err }, 'could not refresh the database lock; will try again')
    }
  }, LOCK_HEARTBEAT_MS)
  lockTimer.unref()
}

const store = stores.jobs

// PostgreSQL: a node id names one running server. Another process still beating under this id (a copied .env, two
// ports given one NODE_ID) would have each adopt, release and kill the other's workers: refuse to start instead. A row
// left by this node's previous process (same host and boot, its pid gone) is this node's own, and its workers are
// adopted as on SQLite.
if (stores.kind === 'postgres') {
  const previous = (await store.nodes()).find((n) => n.node_id === config.nodeId)
  const beating = previous !== undefined && previous.silent_ms < Math.max(config.leaseMs, 3 * NODE_BEAT_MS)
  const predecessor = previous !== undefined && previous.host === hostname() && previous.boot_id === bootId() && !processExists(previous.pid)
  if (beating && !predecessor) {
    const message = `NODE_ID ${config.nodeId} is in use by a running server (pid ${previous.pid} on ${previous.host}, heartbeat ${Math.round(previous.silent_ms)} ms ago): give each node its own NODE_ID`
    log.fatal({ nodeId: config.nodeId, holder: { pid: previous.pid, host: previous.host } }, message)
    process.stderr.write(`nonstop: ${message}\n`)
    await stores.close()
    process.exit(1)
  }
}
// A broken module in JOB_TYPES_DIR is logged and listed with its error; it never stops the server.
const jobTypes = await loadJobTypes({ dir: config.jobTypesDir, log })
const scheduler = createScheduler({ store, config, log, jobTypeModules: jobTypes.userModules })
const app = await buildApp({
  config,
  store,
  scheduler,
  jobTypes,
  matrices: stores.matrices,
  loggerInstance: log,
  dbReady: () => stores.ready(),
  nodes: { self: config.nodeId }
})

if (!['127.0.0.1', '::1', 'localhost'].includes(config.host) && !config.apiToken) {
  log.warn({ host: config.host }, 'listening beyond loopback with no API_TOKEN: anyone who can reach this port can submit and cancel jobs')
}

// SQLite: several processes write to this database; checkpoint the WAL now and then so it cannot grow without
// bound. A failure (disk full) is logged, not a crash.
const walTimer = db && startWalCheckpoints(db, (err) => log.error({ err }, 'WAL checkpoint failed; will try again'))

// Housekeeping, once per interval across every node sharing the database (a slot taken in the database), checked
// every minute: finished jobs older than RETENTION_DAYS deleted hourly, and the change feed's log pruned.
const RETENTION_EVERY_MS = 3_600_000
const PRUNE_EVERY_MS = 60_000
/** Change-feed entries kept: a client further behind than this resumes with a reset (a full reload). */
const FEED_KEEP = 100_000
/** A node silent this long and running nothing has crashed or been renamed for good: its row goes. */
const NODE_FORGET_MS = 86_400_000
async function housekeeping (): Promise<void> {
  try {
    if (config.retentionDays > 0 && await store.claimPeriodic('retention', RETENTION_EVERY_MS)) {
      const purged = await store.purgeFinishedBefore(Date.now() - config.retentionDays * 86_400_000)
      if (purged > 0) log.info({ event: 'purged', purged, retentionDays: config.retentionDays }, 'old finished jobs purged')
    }
    if (await store.claimPeriodic('forget-nodes', RETENTION_EVERY_MS)) {
      const forgotten = await store.forgetNodes(NODE_FORGET_MS)
      if (forgotten > 0) log.info({ forgotten }, 'nodes silent for a day and running nothing removed from the nodes table')
    }
    if (await store.claimPeriodic('prune-feed', PRUNE_EVERY_MS)) {
      const pruned = await store.pruneFeed(FEED_KEEP)
      if (pruned > 0) log.debug({ pruned }, 'change feed pruned')
    }
  } catch (err) {
    log.error({ err }, 'housekeeping failed; will try again in a minute')
  }
}
await housekeeping()
const housekeepingTimer = setInterval(() => { housekeeping().catch(() => {}) }, PRUNE_EVERY_MS)
housekeepingTimer.unref()

scheduler.start()
try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  log.fatal({ err }, 'cannot listen')
  await scheduler.stop()
  lock?.release()
  await stores.close()
  process.exit(1)
}
const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${(app.server.address() as { port: number }).port}/`
log.info({ ...where, maxConcurrency: config.maxConcurrency, url }, 'nonstop ready')
// With the log in a file, the terminal would show nothing at all: one plain line says where to go.
if (config.logFile) process.stdout.write(`nonstop ready at ${url} (log: ${config.logFile})\n`)

let closing = false
async function shutdown (signal: NodeJS.Signals): Promise<void> {
  if (closing) return
  closing = true
  log.info({ signal }, 'shutting down: releasing running jobs')
  const force = setTimeout(() => {
    log.error('shutdown took too long; exiting')
    process.exit(1)
  }, config.shutdownGraceMs + 10_000)
  force.unref()
  try {
    await app.close()
    await scheduler.stop()
    clearInterval(walTimer)
    clearInterval(housekeepingTimer)
    clearInterval(lockTimer)
    lock?.release()
    if (db?.open) db.pragma('wal_checkpoint(TRUNCATE)')
    await stores.close()
    log.info('stopped')
    process.exit(0)
  } catch (err) {
    log.error({ err }, 'shutdown failed')
    process.exit(1)
  }
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)

// Second line of defence behind `exec` in the start script: if whatever started the server (npm, a shell, a
// process manager) goes away without passing the signal on, the server is re-parented; it then stops
// gracefully rather than keep serving the port and running jobs that nobody can stop any more.
const parentPid = process.ppid
const parentWatch = setInterval(() => {
  if (process.ppid !== parentPid) {
    log.warn({ parentPid, ppid: process.ppid }, 'the process that started the server is gone')
    clearInterval(parentWatch)
    shutdown('SIGTERM').catch(() => {})
  }
}, 1000)
parentWatch.unref()
