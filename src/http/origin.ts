/**
 * Requests from other web sites are refused, in every mode (with or without API_TOKEN):
 *
 * - Host: only the loopback names (any port), the interface the server binds to, and ALLOWED_HOSTS. A page on a
 *   foreign domain whose DNS is rebound to this machine sends its own name as Host, so it gets 421 on every
 *   route (API, event stream, dashboard files), and cannot read or change anything.
 * - Cross-site writes: a POST, PUT, PATCH or DELETE that a browser marks as coming from another site
 *   (`Sec-Fetch-Site` other than same-origin / none) or from another origin (`Origin` not this Host) gets 403.
 *   curl and other programs send neither header and are not affected.
 * - Cross-site reads: a GET from another site's page (`Sec-Fetch-Site: cross-site` or `same-site`, anything but
 *   a navigation) gets 403 too, so a foreign page cannot make the server read matrices or hold its stream slots.
 * - A write that has a body must say it is JSON: a form or a text/plain body (what a page can send without a
 *   CORS preflight) gets 415 before anything is parsed. Writes without a body (cancel, retry) need no type. The
 *   one route that takes files (a matrix upload, `config.fileUpload`) is exempt from this rule only.
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import { MUTATING_METHODS } from './auth.js'

/** Host names every server answers to, whatever the configuration. */
export const LOOPBACK_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '[::1]']

/** The host name of a Host header value, lowercased, without the port; null if it is not one. */
export function hostName (host: string | undefined): string | null {
  if (!host) return null
  const match = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::\d{1,5})?$/i.exec(host.trim())
  return match ? match[1].toLowerCase() : null
}

/** Whether `mediaType` (a Content-Type header) is application/json, with or without parameters. */
const isJson = (contentType: string | undefined): boolean =>
  (contentType ?? '').split(';')[0].trim().toLowerCase() === 'application/json'

const refuse = (reply: FastifyReply, statusCode: 403 | 415 | 421, error: string, message: string): FastifyReply =>
  reply.code(statusCode).send({ statusCode, error, message })

/**
 * Adds the checks as the root instance's first onRequest hook, so they cover every route, including static
 * files, the event stream and 404s. `bindHost` (the HOST setting) is accepted too unless it is a wildcard.
 */
export function addOriginChecks (app: FastifyInstance, allowedHosts: readonly string[], bindHost: string): void {
  const bound = hostName(bindHost.includes(':') && !bindHost.startsWith('[') ? `[${bindHost}]` : bindHost)
  const allowed = new Set([...LOOPBACK_HOSTS, ...allowedHosts])
  if (bound && !['0.0.0.0', '[::]'].includes(bound)) allowed.add(bound)

  app.addHook('onRequest', async (req, reply) => {
    const host = req.headers.host
    const name = hostName(host)
    if (name === null || !allowed.has(name)) {
      req.log.warn({ event: 'foreign-host', host }, 'request for a host name this server does not answer')
      return refuse(reply, 421, 'Misdirected Request',
        `this server does not answer to the host name ${JSON.stringify(host ?? '')}; add it to ALLOWED_HOSTS to allow it`)
    }
    // A read another site's page makes (an <img>, a no-cors fetch, an EventSource) could still cost the server
    // work or hold one of its stream slots: refused too. Following a link to the dashboard (a navigation) is fine.
    const fetchSite = req.headers['sec-fetch-site']
    if ((fetchSite === 'cross-site' || fetchSite === 'same-site') && req.headers['sec-fetch-mode'] !== 'navigate') {
      req.log.warn({ event: 'cross-site', site: fetchSite, method: req.method, url: req.url }, 'cross-site request refused')
      return refuse(reply, 403, 'Forbidden', 'cross-site requests are not accepted; use this server\'s own page or a non-browser client')
    }
    if (!MUTATING_METHODS.includes(req.method)) return

    const site = req.headers['sec-fetch-site']
    const origin = req.headers.origin
    let sameOrigin = site === undefined || site === 'same-origin' || site === 'none'
    if (sameOrigin && origin !== undefined) {
      try {
        sameOrigin = new URL(origin).host.toLowerCase() === host!.trim().toLowerCase()
      } catch {
        sameOrigin = false // "null" (a sandboxed or file: page) or garbage
      }
    }
    if (!sameOrigin) {
      req.log.warn({ event: 'cross-site', origin, site, method: req.method, url: req.url }, 'cross-site request refused')
      return refuse(reply, 403, 'Forbidden', 'cross-site requests are not accepted; use this server\'s own page or a non-browser client')
    }

    const hasBody = req.headers['transfer-encoding'] !== undefined ||
      (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0')
    // A route that takes files (POST /api/matrices) says so in its config; it still gets the checks above.
    const fileUpload = (req.routeOptions.config as { fileUpload?: boolean } | undefined)?.fileUpload === true
    if (hasBody && !fileUpload && !isJson(req.headers['content-type'])) {
      return refuse(reply, 415, 'Unsupported Media Type', 'a request body must be JSON, sent with Content-Type: application/json')
    }
  })
}
