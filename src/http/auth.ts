import { createHash, timingSafeEqual } from 'node:crypto'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, onRequestHookHandler } from 'fastify'
import { ErrorReply } from './schemas.js'

/** Methods that change something; only these need the token. Reads, health, metrics and docs stay open. */
export const MUTATING_METHODS: readonly string[] = ['POST', 'PUT', 'PATCH', 'DELETE']

const digest = (value: string): Buffer => createHash('sha256').update(value).digest()

/** Whether `header` is `Bearer <token>`; compares sha256 digests in constant time, so neither length nor content leaks. */
export function bearerMatches (header: string | undefined, token: string): boolean {
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '')
  const given = digest(match ? match[1] : '')
  // Always compare, even without a well-formed header, so a request takes the same time either way.
  return timingSafeEqual(given, digest(token)) && match !== null
}

/** An onRequest hook that answers 401, in Fastify's error shape, a mutating request without the right bearer token. */
export function requireToken (token: string): onRequestHookHandler {
  return async (req, reply) => {
    if (!MUTATING_METHODS.includes(req.method)) return
    if (bearerMatches(req.headers.authorization, token)) return
    req.log.warn({ event: 'unauthorized', method: req.method, url: req.url }, 'request without a valid API token')
    return reply.code(401).header('www-authenticate', 'Bearer realm="nonstop"').send({
      statusCode: 401,
      error: 'Unauthorized',
      message: req.headers.authorization ? 'invalid API token' : 'this route needs Authorization: Bearer <API_TOKEN>'
    })
  }
}

/** The parts of a route schema the OpenAPI spec reads that these hooks add to. */
interface RouteDocs { hide?: boolean, response?: Record<string, unknown>, security?: unknown }

const Unauthorized = { ...ErrorReply, description: 'Missing or wrong bearer token (only when the server has API_TOKEN set)' }

/**
 * Token check for every mutating route when `token` is set. Added to the root instance (not as an encapsulated
 * plugin) so it covers the routes of every plugin. Also documents the 401 and the bearer scheme on those routes,
 * so the OpenAPI spec says which routes need the token; call it before the routes are registered.
 */
export function addAuth (app: FastifyInstance, token: string | undefined): void {
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const schema = route.schema as RouteDocs | undefined
    if (!methods.some((m) => MUTATING_METHODS.includes(m)) || !schema || schema.hide) return
    schema.response = { 401: Unauthorized, ...schema.response }
    schema.security ??= [{ bearerAuth: [] }]
  })
  if (token) app.addHook('onRequest', requireToken(token))
}

const TooMany = { ...ErrorReply, description: 'Too many submissions from this client this minute (RATE_LIMIT_MAX); see Retry-After' }

/**
 * At most `max` POST requests per client address and minute; the next ones get 429 with Retry-After (seconds).
 * Reads, DELETEs and the dashboard's files are not counted. Call it before the routes are registered.
 */
export async function addRateLimit (app: FastifyInstance, max: number): Promise<void> {
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const schema = route.schema as RouteDocs | undefined
    if (!methods.includes('POST') || !schema || schema.hide) return
    schema.response = { 429: TooMany, ...schema.response }
  })
  await app.register(rateLimit, {
    global: true,
    max,
    timeWindow: 60_000,
    allowList: (req) => req.method !== 'POST'
  })
}
