/**
 * The only entry point that listens. loadConfig → open and migrate the database → scheduler → HTTP → listen.
 * SIGTERM / SIGINT: stop accepting, workers checkpoint and give their jobs back, database closed, exit 0.
 */
import { type Config, ConfigError, loadConfig } from './config.js'
import { migrate, openDb, startWalCheckpoints } from './db.js'
import { buildApp } from './http/app.js'
import { checkDb } from './http/ops.js'
import { loadJobTypes } from './job-types/catalog.js'
import { createScheduler } from './jobs/scheduler.js'
import { createJobStore } from './jobs/store.js'
import { createLogger } from './log.js'
import { acquireServerLock, LOCK_HEARTBEAT_MS, type ServerLock, ServerLockHeldError } from './server-lock.js'
import { createMatrixStore } from './matrices/store.js'

let config: Config
try {
  config = loadConfig()
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`nonstop: invalid configuration: ${err.message}\n`)
  process.exit(1)
}

const log = createLogger(config)
const db = openDb(config.dbPath)
const applied = migrate(db)
if (applied.length > 0) log.info({ applied, dbPath: config.dbPath }, 'database migrated')

// One server per database, held before any job is looked at: a second one refuses here, having changed nothing.
let lock: ServerLock
try {
  lock = acquireServerLock(db)
} catch (err) {
  if (!(err instanceof ServerLockHeldError)) throw err
  log.fatal({ holder: err.holder, dbPath: config.dbPath }, err.message)
  process.stderr.write(`nonstop: ${err.message} (DB_PATH=${config.dbPath})\n`)
  db.close()
  process.exit(1)
}
const lockTimer = setInterval(() => {
  try {
    if (lock.refresh()) return
    // Only a server that found this one silent for long, from another host, takes the row: it schedules now.
    log.fatal('another server has taken over this database; exiting without touching its jobs')
    process.exit(1)
  } catch (err) {
    log.error({ err }, 'could not refresh the database lock; will try again')
  }
}, LOCK_HEARTBEAT_MS)
lockTimer.unref()

const store = createJobStore(db)
// A broken module in JOB_TYPES_DIR is logged and listed with its error; it never stops the server.
const jobTypes = await loadJobTypes({ dir: config.jobTypesDir, log })
const scheduler = createScheduler({ store, config, log, jobTypeModules: jobTypes.userModules })
const app = await buildApp({
  config,
  store,
  scheduler,
  jobTypes,
  matrices: createMatrixStore(db),
  loggerInstance: log,
  dbReady: () => checkDb(db)
})

if (!['127.0.0.1', '::1', 'localhost'].includes(config.host) && !config.apiToken) {
  log.warn({ host: config.host }, 'listening beyond loopback with no API_TOKEN: anyone who can reach this port can submit and cancel jobs')
}

// Several processes write to this database; checkpoint the WAL now and then so it cannot grow without bound.
// A failure (disk full) is logged, not a crash.
const walTimer = startWalCheckpoints(db, (err) => log.error({ err }, 'WAL checkpoint failed; will try again'))

// Finished jobs older than RETENTION_DAYS are deleted with their checkpoints: once now, then every hour.
function purgeOldJobs (): void {
  if (config.retentionDays === 0) return
  try {
    const purged = store.purgeFinishedBefore(Date.now() - config.retentionDays * 86_400_000)
    if (purged > 0) log.info({ event: 'purged', purged, retentionDays: config.retentionDays }, 'old finished jobs purged')
  } catch (err) {
    log.error({ err }, 'purging old jobs failed; will try again in an hour')
  }
}
purgeOldJobs()
const retentionTimer = setInterval(purgeOldJobs, 3_600_000)
retentionTimer.unref()

scheduler.start()
try {
  await app.listen({ port: config.port, host: config.host })
} catch (err) {
  log.fatal({ err }, 'cannot listen')
  await scheduler.stop()
  lock.release()
  process.exit(1)
}
const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${(app.server.address() as { port: number }).port}/`
log.info({ dbPath: config.dbPath, maxConcurrency: config.maxConcurrency, url }, 'nonstop ready')
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
    clearInterval(retentionTimer)
    clearInterval(lockTimer)
    lock.release()
    db.pragma('wal_checkpoint(TRUNCATE)')
    db.close()
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
