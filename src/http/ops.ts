import type { FastifyPluginAsync } from 'fastify'
import { type Db, latestSchemaVersion } from '../db.js'
import type { Scheduler, SchedulerHealth } from '../jobs/scheduler.js'

/** What the health routes look at. */
export interface OpsOptions {
  /** Throws, with a reason, when the database is not usable (see checkDb); /readyz answers 503 then. */
  dbReady?: () => void
  /** When the scheduler reports the time of its last pass (epoch ms, null before the first), /readyz also checks it is recent. */
  scheduler?: Pick<Scheduler, 'wake'> & { lastTickAt?: () => number | null, health?: () => SchedulerHealth }
}

/** A scheduler that has not looked at the table for this long is taken as stuck. */
export const SCHEDULER_STALE_MS = 10_000

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
export const opsRoutes: FastifyPluginAsync<OpsOptions> = async (app, { dbReady, scheduler }) => {
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
      dbReady?.()
      const last = scheduler?.lastTickAt?.()
      if (last !== undefined && (last === null || Date.now() - last > SCHEDULER_STALE_MS)) {
        throw new Error(last === null ? 'scheduler not started' : `scheduler has not run for ${Math.round((Date.now() - last) / 1000)} s`)
      }
      const health = scheduler?.health?.()
      if (health && !health.ok) throw new Error(health.reason ?? 'scheduler cannot start jobs')
      return { status: 'ok' }
    } catch (err) {
      req.log.warn({ err }, 'not ready')
      return reply.code(503).send({ status: 'unavailable', reason: (err as Error).message })
    }
  })
}
