import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism, hostname } from 'node:os'
import { resolve } from 'node:path'
import { parseEnv } from 'node:util'

/** Bounds of LEASE_MS. */
export const MIN_LEASE_MS = 500
export const MAX_LEASE_MS = 3_600_000

/** Everything the server and its workers can be told, read once from the environment. */
export interface Config {
  /** TCP port of the HTTP server. */
  readonly port: number
  /** Interface the HTTP server binds to; loopback unless told otherwise. */
  readonly host: string
  /** Path of the SQLite database file; its folder is created if missing. Unused when databaseUrl is set. */
  readonly dbPath: string
  /** PostgreSQL connection string (postgres://…): several nodes share one queue there; SQLite at dbPath without it. */
  readonly databaseUrl: string | undefined
  /** This node's id in the nodes table: NODE_ID, or the host name (SQLite) / host name and port (PostgreSQL). A
   *  restarted node must keep it to adopt its workers. */
  readonly nodeId: string
  /** Connections of the server's PostgreSQL pool (each worker has its own single connection). */
  readonly pgPoolMax: number
  /** At start, how long a server waits for PostgreSQL to accept connections before it exits 1 (0: not at all). */
  readonly dbWaitSeconds: number
  /** Most workers computing at once (forked by this server or adopted from a previous one). */
  readonly maxConcurrency: number
  /** Most jobs waiting in `pending`; submissions beyond it get 429. */
  readonly maxPending: number
  /** Attempts a job gets before a lost worker makes it `failed`. */
  readonly maxAttempts: number
  /** pino level. */
  readonly logLevel: string
  /** File the log is appended to; stdout when absent. */
  readonly logFile: string | undefined
  /** How often a worker writes its heartbeat and progress (ms). */
  readonly heartbeatMs: number
  /** A running job whose heartbeat is older than this is taken as lost (ms). */
  readonly leaseMs: number
  /** Least time between two checkpoints of one worker (ms). */
  readonly checkpointMs: number
  /** How long a worker gets to obey a cancel, timeout or release before it is killed (ms). */
  readonly stopGraceMs: number
  /** How long a graceful shutdown waits for workers to checkpoint and release their jobs (ms). */
  readonly shutdownGraceMs: number
  /** Run-time limit of a job that sets none, in seconds; 0 means no limit. */
  readonly defaultTimeoutSeconds: number
  /** Keep one booted worker waiting for the next job, so a submit does not wait for a boot. */
  readonly warmSpare: boolean
  /** Niceness added to workers so the HTTP server stays responsive while they compute. */
  readonly workerNice: number
  /** Bearer token required by mutating routes; no auth when absent. */
  readonly apiToken: string | undefined
  /** Most POST requests one client may make per minute. */
  readonly rateLimitMax: number
  /** Finished jobs older than this many days are purged; 0 keeps them forever. */
  readonly retentionDays: number
  /** Host names (any port) the server answers besides the loopback names; other Host headers get 421. */
  readonly allowedHosts: readonly string[]
  /** Folder of user job types (each *.js / *.mjs file one type), absolute; none when absent. */
  readonly jobTypesDir: string | undefined,
  /** Largest matrix accepted, in bytes of float64 data (rows × cols × 8); larger uploads get 413. */
  readonly maxMatrixBytes: number
  /** All stored matrices together, in bytes of float64 data; an upload beyond it gets 413. */
  readonly maxMatrixStorageBytes: number
}

/** Thrown for an invalid setting; the message names the variable and what it accepts. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

type Env = Record<string, string | undefined>

function int (env: Env, key: string, fallback: number, min: number, max: number): number {
  const raw = env[key]
  if (raw === undefined || raw.trim() === '') return fallback
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${key} must be an integer, got "${raw}"`)
  const value = Number(raw)
  if (value < min || value > max) throw new ConfigError(`${key} must be between ${min} and ${max}, got ${value}`)
  return value
}

function bool (env: Env, key: string, fallback: boolean): boolean {
  const raw = env[key]?.trim().toLowerCase()
  if (raw === undefined || raw === '') return fallback
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true
  if (['0', 'false', 'no', 'off'].includes(raw)) return false
  throw new ConfigError(`${key} must be true or false, got "${env[key]}"`)
}

/** A host name or IP address as it appears in a Host header, without the port. */
const HOST_NAME = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])$/

function hostList (env: Env, key: string): string[] {
  const names = (env[key] ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean)
  for (const name of names) {
    if (!HOST_NAME.test(name)) throw new ConfigError(`${key} must be a comma-separated list of host names (no scheme, no port), got "${name}"`)
  }
  return names
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/**
 * Reads and validates the configuration. Variables already in `env` win over the `.env` file in the
 * working directory (Node's own parser reads it). Throws ConfigError on the first invalid value.
 */
export function loadConfig (env: Env = process.env, envFile: string | null = '.env'): Config {
  const merged: Env = { ...(envFile && existsSync(envFile) ? parseEnv(readFileSync(envFile, 'utf8')) : {}), ...env }
  const logLevel = (merged.LOG_LEVEL ?? 'info').trim() || 'info'
  if (!LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LEVELS.join(', ')}, got "${logLevel}"`)
  const host = (merged.HOST ?? '127.0.0.1').trim() || '127.0.0.1'
  const heartbeatMs = int(merged, 'HEARTBEAT_MS', 1000, 50, 60_000)
  const leaseMs = int(merged, 'LEASE_MS', 10_000, MIN_LEASE_MS, MAX_LEASE_MS)
  if (leaseMs < 2 * heartbeatMs) throw new ConfigError(`LEASE_MS (${leaseMs}) must be at least twice HEARTBEAT_MS (${heartbeatMs})`)
  // A worker notices a stop request with its next heartbeat: a grace shorter than two of them kills workers
  // that were about to obey (and a shutdown would then kill instead of release).
  const stopGraceMs = int(merged, 'STOP_GRACE_MS', 3000, 100, 600_000)
  const shutdownGraceMs = int(merged, 'SHUTDOWN_GRACE_MS', 5000, 100, 600_000)
  for (const [key, value] of [['STOP_GRACE_MS', stopGraceMs], ['SHUTDOWN_GRACE_MS', shutdownGraceMs]] as const) {
    if (value < 2 * heartbeatMs) throw new ConfigError(`${key} (${value}) must be at least twice HEARTBEAT_MS (${heartbeatMs})`)
  }
  const databaseUrl = merged.DATABASE_URL?.trim() || undefined
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\/./.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must be a PostgreSQL connection string (postgres://user:password@host:port/database)')
  }
  const port = int(merged, 'PORT', 3000, 0, 65535)
  // On SQLite one server uses a file (its server lock), so the machine names the node and a restart on another port
  // still adopts its workers; on PostgreSQL several nodes may share a machine, each on its own port.
  const nodeId = merged.NODE_ID?.trim() || (databaseUrl === undefined ? hostname() : `${hostname()}:${port}`)
  if (!/^[\w.:@-]{1,100}$/.test(nodeId)) throw new ConfigError(`NODE_ID must be 1 to 100 letters, digits or . : @ _ -, got "${nodeId}"`)
  return Object.freeze({
    port,
    host,
    dbPath: resolve(merged.DB_PATH?.trim() || './data/nonstop.db'),
    databaseUrl,
    nodeId,
    pgPoolMax: int(merged, 'PG_POOL_MAX', 10, 2, 1000),
    dbWaitSeconds: int(merged, 'DB_WAIT_SECONDS', 60, 0, 86_400),
    maxConcurrency: int(merged, 'MAX_CONCURRENCY', availableParallelism(), 1, 256),
    maxPending: int(merged, 'MAX_PENDING', 10_000, 1, 10_000_000),
    maxAttempts: int(merged, 'MAX_ATTEMPTS', 3, 1, 100),
    logLevel,
    logFile: merged.LOG_FILE?.trim() || undefined,
    heartbeatMs,
    leaseMs,
    checkpointMs: int(merged, 'CHECKPOINT_MS', 2000, 0, 3_600_000),
    stopGraceMs,
    shutdownGraceMs,
    defaultTimeoutSeconds: int(merged, 'JOB_TIMEOUT_SECONDS', 0, 0, 31_536_000),
    warmSpare: bool(merged, 'WARM_SPARE', true),
    workerNice: int(merged, 'WORKER_NICE', 10, 0, 19),
    apiToken: merged.API_TOKEN?.trim() || undefined,
    rateLimitMax: int(merged, 'RATE_LIMIT_MAX', 600, 1, 1_000_000),
    retentionDays: int(merged, 'RETENTION_DAYS', 30, 0, 36_500),
    allowedHosts: Object.freeze(hostList(merged, 'ALLOWED_HOSTS')),
    jobTypesDir: merged.JOB_TYPES_DIR?.trim() ? resolve(merged.JOB_TYPES_DIR.trim()) : undefined,
    maxMatrixBytes: int(merged, 'MAX_MATRIX_BYTES', 64 * 1024 * 1024, 8, 8192 * 8192 * 8),
    maxMatrixStorageBytes: int(merged, 'MAX_MATRIX_STORAGE_BYTES', 4 * 1024 ** 3, 8, Number.MAX_SAFE_INTEGER)
  })
}
