import type { FastifyPluginAsync } from 'fastify'
import type { AppOptions } from './app.js'

/** /healthz (the process answers) and /readyz (the database is usable). */
export const opsRoutes: FastifyPluginAsync<AppOptions> = async (app, { dbReady }) => {
  const Health = { type: 'object', properties: { status: { type: 'string' } }, required: ['status'] } as const

  app.get('/healthz', {
    schema: { summary: 'Liveness: the process answers', tags: ['ops'], response: { 200: Health } }
  }, async () => ({ status: 'ok' }))

  app.get('/readyz', {
    schema: {
      summary: 'Readiness: the database is writable and migrated',
      tags: ['ops'],
      response: { 200: Health, 503: { type: 'object', properties: { status: { type: 'string' }, reason: { type: 'string' } } } }
    }
  }, async (req, reply) => {
    try {
      dbReady?.()
      return { status: 'ok' }
    } catch (err) {
      req.log.warn({ err }, 'not ready')
      return reply.code(503).send({ status: 'unavailable', reason: (err as Error).message })
    }
  })
}
