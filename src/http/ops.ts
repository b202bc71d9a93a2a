import type { FastifyPluginAsync } from 'fastify'
import { type Db, latestSchemaVersion } from '../db.js'
import type { SchedulerHealth } from '../jobs/scheduler.js'

/** What the health routes look at. */
export interface OpsOptions {
  /** Resolves when the database is usable, throws or rejects with the reason otherwise (see checkDb, and the
   *  stores' ready()); /readyz answers 503 then. */
  dbReady?: () => void | Promise<void>
  /** When the scheduler reports the time of its last pass (epoch ms, null before the first), /readyz also checks it is recent. */
  scheduler?: {
    lastTickAt?: () => number | null | Promise<number | null>
    health?: () => SchedulerHealth | Promise<SchedulerHealth>
  }
}

/** A scheduler that has not looked at the table for this long is taken as stuck. */
export const SCHEDULER_STALE_MS = 10_000
/** A database (or scheduler) that has not answered the readiness check in this long is not ready (ms). */
export const READY_TIMEOUT_MS = 5_000

/** `promise`, or a rejection naming `what` when it has not settled within `ms`. */
async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms / 1000} s`)), ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Readiness of the database: it is open, it accepts a write lock (BEGIN IMMEDIATE, rolled back at once: nothing
 * is written) and its schema is the one this code expects. Throws an Error naming what is wrong.
 */
export function checkDb (db: Db, expected = latestSchemaVersion()): void {
  if (!db.open) throw new Error('database is closed')
  const version = db.pragma('user_version', { simple: true }) as number
  if (version !== expected) throw new Error(`database schema is version ${version}, this code needs ${expected}`)
  db.prepare('BEGIN IMMEDIATE').run()
  db.prepare('ROLLBACK').run()
}

const Health = {
  type: 'object',
  properties: { status: { type: 'string', enum: ['ok'] } },
  required: ['status']
} as const

const Unavailable = {
  type: 'object',
  description: 'Not ready: the reason says what is wrong',
  properties: { status: { type: 'string', enum: ['unavailable'] }, reason: { type: 'string' } },
  required: ['status', 'reason']
} as const

/** /healthz (the process answers) and /readyz (the database is writable and migrated, the scheduler runs). */
export const opsRoutes: FastifyPluginAsync<OpsOptions & { readyTimeoutMs?: number }> = async (app, { dbReady, scheduler, readyTimeoutMs = READY_TIMEOUT_MS }) => {
  app.get('/healthz', {
    schema: { summary: 'Liveness: the process answers', tags: ['ops'], response: { 200: Health } }
  }, async () => ({ status: 'ok' }))

  app.get('/readyz', {
    schema: {
      summary: 'Readiness: the database is writable and migrated, and the scheduler is running',
      tags: ['ops'],
      response: { 200: Health, 503: Unavailable }
    }
  }, async (req, reply) => {
    try {
      // A database that hangs (PostgreSQL unreachable, a connection pool exhausted) is as unready as one that refuses.
      const ask = <T>(f: () => T | Promise<T>, what: string): Promise<T> => within(Promise.resolve().then(f), readyTimeoutMs, what)
      if (dbReady) await ask(dbReady, 'the database')
      const last = scheduler?.lastTickAt ? await ask(() => scheduler.lastTickAt!(), 'the scheduler') : undefined
      if (last !== undefined && (last === null || Date.now() - last > SCHEDULER_STALE_MS)) {
        throw new Error(last === null ? 'scheduler not started' : `scheduler has not run for ${Math.round((Date.now() - last) / 1000)} s`)
      }
      const health = scheduler?.health ? await ask(() => scheduler.health!(), 'the scheduler') : undefined
      if (health && !health.ok) throw new Error(health.reason ?? 'scheduler cannot start jobs')
      return { status: 'ok' }
    } catch (err) {
      req.log.warn({ err }, 'not ready')
      return reply.code(503).send({ status: 'unavailable', reason: (err as Error).message })
    }
  })
}
