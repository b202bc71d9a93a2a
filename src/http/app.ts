import { fileURLToPath } from 'node:url'
import fastifyHelmet from '@fastify/helmet'
import fastifyStatic from '@fastify/static'
import { Ajv, type Options as AjvOptions } from 'ajv'
import addFormats from 'ajv-formats'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Config } from '../config.js'
import { HttpError } from '../errors.js'
import type { Scheduler } from '../jobs/scheduler.js'
import type { JobStore } from '../jobs/store.js'
import type { Logger } from '../log.js'
import type { MatrixStore } from '../matrices/store.js'
import { addAuth, addRateLimit } from './auth.js'
import { addDocs } from './docs.js'
import { eventsRoutes } from './events.js'
import { jobRoutes } from './jobs.js'
import { matrixRoutes } from './matrices.js'
import { createMetrics, metricsRoutes } from './metrics.js'
import { opsRoutes } from './ops.js'

/** Static files of the dashboard, the same relative path from src/http and dist/http. */
export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url))

/** Everything the HTTP layer is given; it opens nothing itself. */
export interface AppOptions {
  config: Config
  store: JobStore
  scheduler: Pick<Scheduler, 'wake'> & Partial<Pick<Scheduler, 'stats' | 'childPids' | 'lastTickAt'>>
  loggerInstance?: Logger
  /** Stored matrices; the /api/matrices routes are served when given. */
  matrices?: MatrixStore
  /** Checks the database is usable, for /readyz. */
  dbReady?: () => void
}

// Bodies are taken as sent: a string is not a number and an unknown field is an error, not silently dropped.
// Query strings and path params are text by nature, so those are coerced.
function validators (): Record<string, Ajv> {
  const make = (options: AjvOptions): Ajv => {
    const ajv = new Ajv({ removeAdditional: false, useDefaults: true, allErrors: false, ...options })
    addFormats.default(ajv)
    return ajv
  }
  return {
    body: make({ coerceTypes: false }),
    querystring: make({ coerceTypes: 'array' }),
    params: make({ coerceTypes: true }),
    headers: make({ coerceTypes: true })
  }
}

/** Builds the Fastify instance with every route registered. Never listens: src/server.ts does that. */
export async function buildApp (options: AppOptions): Promise<FastifyInstance> {
  const serverOptions: FastifyServerOptions = options.loggerInstance
    ? { loggerInstance: options.loggerInstance }
    : { logger: false }
  const app = Fastify({ ...serverOptions, bodyLimit: 64 * 1024, return503OnClosing: true })

  // The API speaks JSON only: anything else is 415, not a string body that fails validation further on.
  app.removeContentTypeParser('text/plain')

  const ajv = validators()
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const compiler = ajv[httpPart ?? 'body'] ?? ajv.body
    return compiler.compile(schema)
  })

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof HttpError) {
      return reply.code(err.statusCode).headers(err.headers).send({
        statusCode: err.statusCode,
        error: err.statusCode === 404 ? 'Not Found' : err.statusCode === 409 ? 'Conflict' : 'Too Many Requests',
        message: err.message
      })
    }
    const statusCode = (err as { statusCode?: number }).statusCode ?? 500
    if (statusCode >= 500) {
      req.log.error({ err }, 'request failed')
      return reply.code(statusCode).send({ statusCode, error: 'Internal Server Error', message: 'internal error; see the server log' })
    }
    return reply.send(err)
  })

  // The dashboard loads only its own files: no inline script or style, API calls and the event stream to
  // this origin only. Routes that need more (e.g. a docs UI) relax it on their own.
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"]
      }
    }
  })
  // Before any route: the spec, the token check and the rate limit each hook onRoute to see the routes added below.
  await addDocs(app)
  addAuth(app, options.config.apiToken)
  await addRateLimit(app, options.config.rateLimitMax)
  const metrics = createMetrics(options)
  app.addHook('onError', async (_req, _reply, err) => { metrics.observeError(err) })

  await app.register(fastifyStatic, { root: PUBLIC_DIR, index: 'index.html' })
  await app.register(eventsRoutes, options)
  await app.register(jobRoutes, options)
  if (options.matrices) await app.register(matrixRoutes, { matrices: options.matrices, config: options.config })
  await app.register(opsRoutes, options)
  await app.register(metricsRoutes, { metrics })
  return app
}
