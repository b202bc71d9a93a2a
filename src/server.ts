/**
 * The only entry point that listens. loadConfig → open and migrate the database → scheduler → HTTP → listen.
 * SIGTERM / SIGINT: stop accepting, workers checkpoint and give their jobs back, database closed, exit 0.
 */
import { type Config, ConfigError, loadConfig } from './config.js'
import { migrate, openDb } from './db.js'
import { buildApp } from './http/app.js'
import { checkDb } from './http/ops.js'
import { createScheduler } from './jobs/scheduler.js'
import { createJobStore } from './jobs/store.js'
import { createLogger } from './log.js'
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

const store = createJobStore(db)
const scheduler = createScheduler({ store, config, log })
const app = await buildApp({
  config,
  store,
  scheduler,
  matrices: createMatrixStore(db),
  loggerInstance: log,
  dbReady: () => checkDb(db)
})

if (!['127.0.0.1', '::1', 'localhost'].includes(config.host) && !config.apiToken) {
  log.warn({ host: config.host }, 'listening beyond loopback with no API_TOKEN: anyone who can reach this port can submit and cancel jobs')
}

// Several processes write to this database; checkpoint the WAL now and then so it cannot grow without bound.
const walTimer = setInterval(() => db.pragma('wal_checkpoint(PASSIVE)'), 10_000)
walTimer.unref()

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
  process.exit(1)
}
log.info({ dbPath: config.dbPath, maxConcurrency: config.maxConcurrency, url: `http://${config.host}:${config.port}/` }, 'nonstop ready')

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
