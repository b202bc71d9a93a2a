import { fileURLToPath } from 'node:url'
import fastifyHelmet from '@fastify/helmet'
import fastifyStatic from '@fastify/static'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { createAjv } from '../ajv.js'
import type { Config } from '../config.js'
import { type JobTypeCatalog, loadJobTypes } from '../job-types/catalog.js'
import { HttpError } from '../errors.js'
import type { Scheduler } from '../jobs/scheduler.js'
import type { JobStore } from '../jobs/store.js'
import type { Logger } from '../log.js'
import type { MatrixStore } from '../matrices/store.js'
import { addAuth, addRateLimit } from './auth.js'
import { addDocs } from './docs.js'
import { eventsRoutes } from './events.js'
import { jobTypeRoutes } from './job-types.js'
import { jobRoutes } from './jobs.js'
import { matrixRoutes } from './matrices.js'
import { createMetrics, metricsRoutes } from './metrics.js'
import { opsRoutes } from './ops.js'
import { statsRoutes } from './stats.js'
import { addOriginChecks } from './origin.js'

/** Static files of the dashboard, the same relative path from src/http and dist/http. */
export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url))

/** Everything the HTTP layer is given; it opens nothing itself. */
export interface AppOptions {
  config: Config
  store: JobStore
  scheduler: Pick<Scheduler, 'wake'> & Partial<Pick<Scheduler, 'stats' | 'childPids' | 'lastTickAt' | 'health'>>
  loggerInstance?: Logger
  /** Stored matrices; the /api/matrices routes are served when given. */
  matrices?: MatrixStore
  /** Checks the database is usable, for /readyz. */
  dbReady?: () => void
  /** The job types on offer, loaded at start (src/server.ts); the built-ins alone when absent. */
  jobTypes?: JobTypeCatalog
}

// Bodies are taken as sent: a string is not a number and an unknown field is an error, not silently dropped.
// Query strings and path params are text by nature, so those are coerced.
function validators (): Record<string, ReturnType<typeof createAjv>> {
  return {
    body: createAjv({ coerceTypes: false }),
    querystring: createAjv({ coerceTypes: 'array' }),
    params: createAjv({ coerceTypes: true }),
    headers: createAjv({ coerceTypes: true })
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

  // First of all: a foreign Host (DNS rebinding) or a cross-site write never gets further.
  addOriginChecks(app, options.config.allowedHosts, options.config.host)

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
  const jobTypes = options.jobTypes ?? await loadJobTypes({})
  await app.register(jobTypeRoutes, { jobTypes })
  await app.register(jobRoutes, { ...options, jobTypes })
  if (options.matrices) await app.register(matrixRoutes, { matrices: options.matrices, config: options.config })
  await app.register(statsRoutes, options)
  await app.register(opsRoutes, options)
  await app.register(metricsRoutes, { metrics })
  return app
}
