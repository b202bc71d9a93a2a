import { readFileSync } from 'node:fs'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'

/** Version of this package, for the spec; the same relative path from src/http and dist/http. */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/**
 * What Swagger UI needs and nothing more: its own scripts and styles (it sets some styles inline), data: images
 * for its icons, and fetch of /docs/json from this origin. It replaces the app-wide policy on /docs only.
 * No upgrade-insecure-requests: nonstop is usually served over plain http on a private network.
 */
export const DOCS_CSP = [
  "default-src 'self'",
  "base-uri 'self'",
  "connect-src 'self'",
  "font-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'self'",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self' 'unsafe-inline'"
].join('; ')

/**
 * OpenAPI 3.1 built from the route schemas (so register it before the routes), the spec at /docs/json and
 * /docs/yaml, and Swagger UI at /docs.
 */
export async function addDocs (app: FastifyInstance): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'nonstop',
        version: VERSION,
        description: 'Submit heavy matrix computations over HTTP; each runs in its own worker process, all state in SQLite.'
      },
      tags: [
        { name: 'jobs', description: 'Submit, follow, cancel, retry and delete jobs' },
        { name: 'ops', description: 'Health, readiness and metrics' }
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'API_TOKEN, needed by POST and DELETE routes when the server sets one' }
        }
      }
    }
  })
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    staticCSP: DOCS_CSP,
    uiConfig: { docExpansion: 'list', deepLinking: true, validatorUrl: null, persistAuthorization: true }
  })
}
