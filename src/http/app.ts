import { fileURLToPath } from 'node:url'
import fastifyHelmet from '@fastify/helmet'
import fastifyStatic from '@fastify/static'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { createAjv } from '../ajv.js'
import type { Config } from '../config.js'
import { type JobTypeCatalog, loadJobTypes } from '../job-types/catalog.js'
import { HttpError } from '../errors.js'
import type { SchedulerHealth, SchedulerStats } from '../jobs/scheduler.js'
import type { Logger } from '../log.js'
import type { AsyncJobStore, NodeRow } from '../store/job-store.js'
import type { AsyncMatrixStore } from '../store/matrix-store.js'
import { addAuth, addRateLimit } from './auth.js'
import { addDocs } from './docs.js'
import { type EventsRoutesOptions, eventsRoutes } from './events.js'
import { jobTypeRoutes } from './job-types.js'
import { jobRoutes } from './jobs.js'
import { matrixRoutes } from './matrices.js'
import { createMetrics, metricsRoutes } from './metrics.js'
import { nodeRoutes } from './nodes.js'
import { opsRoutes } from './ops.js'
import { statsRoutes } from './stats.js'
import { addOriginChecks } from './origin.js'

/** Static files of the dashboard, the same relative path from src/http and dist/http. */
export const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url))

/** What the HTTP layer asks of the scheduler: wake-ups, and what it reports for /readyz and /metrics. Each report
 *  may be a value or a promise. */
export interface AppScheduler {
  wake (): void
  stats?: SchedulerStats
  childPids?: () => number[]
  /** Epoch ms of its last pass; null before the first. */
  lastTickAt?: () => number | null | Promise<number | null>
  health?: () => SchedulerHealth | Promise<SchedulerHealth>
}

/** The nodes sharing the database, for GET /api/nodes and /metrics. */
export interface AppNodes {
  /** Every node known (the store's nodes() by default). */
  list?: () => Promise<NodeRow[]>
  /** This server's node id, marked in GET /api/nodes. */
  self?: string
}

/** Everything the HTTP layer is given; it opens nothing itself. */
export interface AppOptions {
  config: Config
  /** The job store (src/store/open.ts: SQLite or PostgreSQL). */
  store: AsyncJobStore
  scheduler: AppScheduler
  loggerInstance?: Logger
  /** Stored matrices; the /api/matrices routes are served when given. */
  matrices?: AsyncMatrixStore
  /** Resolves when the database is usable, rejects with the reason otherwise (/readyz answers 503 with it). */
  dbReady?: () => void | Promise<void>
  /** The job types on offer, loaded at start (src/server.ts); the built-ins alone when absent. */
  jobTypes?: JobTypeCatalog
  /** The nodes sharing the database; the store's own list when absent. */
  nodes?: AppNodes
  /** Overrides of the event stream's tuning (tests shorten them). */
  events?: EventsRoutesOptions['events']
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
  const { store, matrices } = options
  const listNodes = options.nodes?.list ?? (() => store.nodes())
  const metrics = createMetrics({ store, scheduler: options.scheduler, nodes: listNodes })
  app.addHook('onError', async (_req, _reply, err) => { metrics.observeError(err) })

  await app.register(fastifyStatic, { root: PUBLIC_DIR, index: 'index.html' })
  await app.register(eventsRoutes, { store, events: options.events })
  const jobTypes = options.jobTypes ?? await loadJobTypes({})
  await app.register(jobTypeRoutes, { jobTypes })
  await app.register(jobRoutes, { store, scheduler: options.scheduler, config: options.config, jobTypes, matrices })
  if (matrices) await app.register(matrixRoutes, { matrices, config: options.config })
  await app.register(statsRoutes, { store })
  await app.register(nodeRoutes, { list: listNodes, self: options.nodes?.self })
  await app.register(opsRoutes, { dbReady: options.dbReady, scheduler: options.scheduler })
  await app.register(metricsRoutes, { metrics })
  return app
}
