/**
 * GET /api/events: a Server-Sent Events stream of job changes, for the dashboard and any other client.
 *
 *   event: job      id: <version>   data: <job JSON, as GET /api/jobs/:id returns it>   whenever the job's row changes
 *   event: deleted                  data: {"id":<id>}                                   after a DELETE /api/jobs/:id here
 *   event: reset                    data: {}                                            too much to replay; reload the list
 *
 * Workers write only to SQLite, so the server learns of changes by reading it. Every write to a job takes the
 * next number of a change counter inside its own transaction (migrations/002), so the numbers follow commit
 * order. One shared poller, running only while at least one client is connected, reads the rows changed after
 * the last number it sent (`store.changedAfter`, indexed) every POLL_MS: a few µs when nothing changed, and
 * this server's own writes are seen the same way as the workers'.
 *
 * Event ids are those numbers (the job's `version`). A client reconnecting with Last-Event-ID gets exactly the
 * jobs changed after it, or `reset` when that is more than MAX_REPLAY rows.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsync } from 'fastify'
import { type JobStore, toJob } from '../jobs/store.js'
import type { JobRow } from '../jobs/types.js'

/** How the stream polls; the defaults suit production, tests shorten them. */
export interface EventsTuning {
  /** Interval of the shared poller (ms). */
  pollMs: number
  /** Interval of the `: ping` comment that keeps proxies from closing an idle stream (ms). */
  heartbeatMs: number
}

/** What the events route needs. */
export interface EventsRoutesOptions {
  store: Pick<JobStore, 'changedAfter' | 'latestSeq'>
  /** Overrides of the polling defaults. */
  events?: Partial<EventsTuning>
}

const DEFAULTS: EventsTuning = { pollMs: 50, heartbeatMs: 15_000 }
/** Rows read per query. */
const PAGE = 500
/** Most rows one tick sends; the rest wait for the next tick. */
const MAX_PER_TICK = 5000
/** Most rows replayed to a client resuming with Last-Event-ID; beyond it the client is told to reload. */
const MAX_REPLAY = 5000
/** A client that has this much unsent data is too slow to follow; it is dropped and reconnects. */
const MAX_BUFFERED = 4 * 1024 * 1024

const jobFrame = (row: JobRow): string => `id: ${row.seq}\nevent: job\ndata: ${JSON.stringify(toJob(row))}\n\n`
const frame = (event: string, data: string): string => `event: ${event}\ndata: ${data}\n\n`

/** GET /api/events. Also watches DELETE /api/jobs/:id (without the job routes knowing) to announce deletions. */
export const eventsRoutes: FastifyPluginAsync<EventsRoutesOptions> = async (app, options) => {
  const { store } = options
  const tuning: EventsTuning = { ...DEFAULTS, ...options.events }
  const clients = new Set<ServerResponse>()
  /** Number of the last change sent to every client. */
  let cursor = 0
  let poller: NodeJS.Timeout | null = null
  let pinger: NodeJS.Timeout | null = null
  let failing = false

  const send = (res: ServerResponse, chunk: string): void => {
    if (res.writableLength > MAX_BUFFERED) {
      app.log.warn({ buffered: res.writableLength }, 'event stream client too slow; dropping it')
      res.destroy()
      return
    }
    res.write(chunk)
  }
  const broadcast = (chunk: string): void => {
    for (const res of clients) send(res, chunk)
  }

  /** Calls `each` for the rows changed after `after` and up to `upTo`, in order; false if there were more than `max`. */
  const readChanged = (after: number, upTo: number, max: number, each: (row: JobRow) => void): boolean => {
    let seen = 0
    while (after < upTo) {
      const rows = store.changedAfter(after, PAGE)
      for (const row of rows) {
        if (row.seq > upTo) return true
        if (++seen > max) return false
        each(row)
        after = row.seq
      }
      if (rows.length < PAGE) return true
    }
    return true
  }

  const tick = (): void => {
    try {
      readChanged(cursor, Number.MAX_SAFE_INTEGER, MAX_PER_TICK, (row) => {
        cursor = row.seq
        broadcast(jobFrame(row))
      })
      failing = false
    } catch (err) {
      // Logged once per run of failures, not 20 times a second.
      if (!failing) app.log.error({ err }, 'event stream poll failed')
      failing = true
    }
  }

  const start = (): void => {
    // What was committed before the first client connected is in the page's own fetch, made after the stream opens.
    cursor = store.latestSeq()
    poller = setInterval(tick, tuning.pollMs)
    poller.unref()
    pinger = setInterval(() => broadcast(': ping\n\n'), tuning.heartbeatMs)
    pinger.unref()
  }

  const stop = (): void => {
    if (poller) clearInterval(poller)
    if (pinger) clearInterval(pinger)
    poller = pinger = null
  }

  app.get('/api/events', {
    schema: {
      summary: 'Live job changes (Server-Sent Events)',
      description: 'text/event-stream: `event: job` with the job JSON whenever a job changes (id: the job\'s version), `event: deleted` ' +
        'with {id} after a delete, `event: reset` when a resume is too far behind. Send Last-Event-ID to resume; `: ping` every 15 s.',
      tags: ['jobs'],
      headers: {
        type: 'object',
        properties: { 'last-event-id': { type: 'string', description: 'id of the last event received; resumes after it' } }
      }
    }
  }, (req, reply) => {
    const res = reply.raw
    reply.hijack()
    res.writeHead(200, {
      // Keep the headers set so far (security headers), then the stream's own.
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no'
    })
    res.write('retry: 1000\n: connected\n\n')

    if (clients.size === 0) start()

    // Resume: the changes after the client's last id, up to where the shared stream is; later ones come with it.
    const lastId = Number(req.headers['last-event-id'])
    if (Number.isSafeInteger(lastId) && lastId >= 0 && req.headers['last-event-id'] !== undefined) {
      const replay: string[] = []
      const complete = readChanged(lastId, cursor, MAX_REPLAY, (row) => replay.push(jobFrame(row)))
      send(res, complete ? replay.join('') : frame('reset', '{}'))
    }

    clients.add(res)
    res.on('close', () => {
      clients.delete(res)
      if (clients.size === 0) stop()
    })
  })

  // Deletions leave no row to poll. The job routes do not know about this stream; it watches their replies.
  app.addHook('onResponse', (req, reply, done) => {
    if (clients.size > 0 && req.method === 'DELETE' && reply.statusCode === 204 && req.routeOptions.url === '/api/jobs/:id') {
      const id = Number((req.params as { id: unknown }).id)
      broadcast(frame('deleted', JSON.stringify({ id })))
    }
    done()
  })

  // Streams never end on their own; end them so that close() does not wait for clients.
  app.addHook('preClose', (done) => {
    for (const res of clients) res.end()
    clients.clear()
    stop()
    done()
  })
}

// Like fastify-plugin: the onResponse hook above must see the job routes, which live in a sibling context.
Object.assign(eventsRoutes, { [Symbol.for('skip-override')]: true })
