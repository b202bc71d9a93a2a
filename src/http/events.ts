/**
 * GET /api/events: a Server-Sent Events stream of job changes, for the dashboard and any other client.
 *
 *   event: job      data: <job JSON, as GET /api/jobs/:id returns it>   whenever the job's row changes
 *   event: deleted  data: {"id":<id>}                                   after a DELETE /api/jobs/:id through this server
 *   event: reset    data: {}                                            too much changed to replay; reload the list
 *
 * Workers write only to SQLite, so the server learns of changes by reading it: one shared poller, running only
 * while at least one client is connected, reads `store.changedSince()` (indexed on updated_at) every POLL_MS.
 * updated_at is in ms and several rows can share one ms, so each tick reads `updated_at >= cursor` and drops
 * rows whose state it already sent. A worker's heartbeat takes its timestamp before it waits for the write
 * lock, so it can commit with an updated_at older than rows already seen; every LOOKBACK_EVERY ticks the
 * poller re-reads the last LOOKBACK_MS to pick those up. Always querying (instead of first checking
 * PRAGMA data_version) costs a few µs per idle tick, and it also sees this server's own writes, which do not
 * change data_version on the connection that made them.
 *
 * Event ids are the poller's cursor (the newest updated_at it has sent), so they never go backwards; a client
 * reconnecting with Last-Event-ID gets every job changed since LOOKBACK_MS before that id (a few repeats are
 * possible, never a gap).
 */
import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsync } from 'fastify'
import { type JobStore, toJob } from '../jobs/store.js'
import type { JobRow } from '../jobs/types.js'

/** How the stream polls; the defaults suit production, tests shorten them. */
export interface EventsTuning {
  /** Interval of the shared poller (ms). */
  pollMs: number
  /** How far back the poller re-reads for late commits, and a resume replays before Last-Event-ID (ms). */
  lookbackMs: number
  /** Every how many ticks the poller re-reads the lookback window. */
  lookbackEvery: number
  /** Interval of the `: ping` comment that keeps proxies from closing an idle stream (ms). */
  heartbeatMs: number
}

/** What the events route needs. */
export interface EventsRoutesOptions {
  store: Pick<JobStore, 'changedSince'>
  /** Overrides of the polling defaults. */
  events?: Partial<EventsTuning>
}

const DEFAULTS: EventsTuning = { pollMs: 50, lookbackMs: 1000, lookbackEvery: 10, heartbeatMs: 15_000 }
/** Rows read per query; a tick pages through more. */
const PAGE = 1000
/** Most pages one tick (or one resume) reads before it leaves the rest for later (or asks for a reset). */
const MAX_PAGES = 10
/** A client that has this much unsent data is too slow to follow; it is dropped and reconnects. */
const MAX_BUFFERED = 4 * 1024 * 1024

// What decides whether a row changed since it was last sent. Every write sets updated_at, but two writes can
// share a ms; the other fields tell those apart (result and error only change together with status).
const signature = (row: JobRow): string =>
  `${row.updated_at}|${row.status}|${row.step}|${row.progress}|${row.stop_request}|${row.pid}|${row.attempts}|${row.lease}`

const frame = (event: string, id: number, data: string): string => `id: ${id}\nevent: ${event}\ndata: ${data}\n\n`

/** GET /api/events. Also watches DELETE /api/jobs/:id (without the job routes knowing) to announce deletions. */
export const eventsRoutes: FastifyPluginAsync<EventsRoutesOptions> = async (app, options) => {
  const { store } = options
  const tuning: EventsTuning = { ...DEFAULTS, ...options.events }
  const clients = new Set<ServerResponse>()
  /** Per job id: signature and updated_at of the state last sent, for rows inside the lookback window. */
  const sent = new Map<number, { at: number, sig: string }>()
  let cursor = 0
  let ticks = 0
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

  /** Reads the rows changed after `since`, page by page; false if it stopped at MAX_PAGES. */
  const readChanged = (since: number, each: (row: JobRow) => void): boolean => {
    for (let page = 0; page < MAX_PAGES; page++) {
      const rows = store.changedSince(since, PAGE)
      for (const row of rows) each(row)
      if (rows.length < PAGE) return true
      const last = rows[rows.length - 1].updated_at
      // Re-read the last ms (its rest may be on the next page); rows already sent are skipped.
      since = last - 1 > since ? last - 1 : last
    }
    return false
  }

  const consider = (row: JobRow): void => {
    const sig = signature(row)
    if (sent.get(row.id)?.sig === sig) return
    sent.set(row.id, { at: row.updated_at, sig })
    if (row.updated_at > cursor) cursor = row.updated_at
    broadcast(frame('job', cursor, JSON.stringify(toJob(row))))
  }

  const tick = (): void => {
    try {
      ticks++
      const deep = ticks % tuning.lookbackEvery === 0
      readChanged(deep ? cursor - tuning.lookbackMs - 1 : cursor - 1, consider)
      if (deep) {
        for (const [id, { at }] of sent) if (at < cursor - tuning.lookbackMs - 1) sent.delete(id)
      }
      failing = false
    } catch (err) {
      // Logged once per run of failures, not 20 times a second.
      if (!failing) app.log.error({ err }, 'event stream poll failed')
      failing = true
    }
  }

  const start = (): void => {
    // What is already in the window was committed before this client connected, so the page's own fetch,
    // made after the stream opens, has it: remember it as sent.
    const now = Date.now()
    sent.clear()
    cursor = now
    readChanged(now - tuning.lookbackMs - 1, (row) => {
      sent.set(row.id, { at: row.updated_at, sig: signature(row) })
      if (row.updated_at > cursor) cursor = row.updated_at
    })
    poller = setInterval(tick, tuning.pollMs)
    poller.unref()
    pinger = setInterval(() => broadcast(': ping\n\n'), tuning.heartbeatMs)
    pinger.unref()
  }

  const stop = (): void => {
    if (poller) clearInterval(poller)
    if (pinger) clearInterval(pinger)
    poller = pinger = null
    sent.clear()
  }

  app.get('/api/events', {
    schema: {
      summary: 'Live job changes (Server-Sent Events)',
      description: 'text/event-stream: `event: job` with the job JSON whenever a job changes, `event: deleted` with {id} after a delete, ' +
        '`event: reset` when a resume is too far behind. Send Last-Event-ID to resume; `: ping` every 15 s.',
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

    const lastId = Number(req.headers['last-event-id'])
    if (Number.isSafeInteger(lastId) && lastId > 0) {
      const replay: string[] = []
      const complete = readChanged(lastId - tuning.lookbackMs - 1, (row) => {
        replay.push(frame('job', Math.max(lastId, row.updated_at), JSON.stringify(toJob(row))))
      })
      if (complete) for (const chunk of replay) send(res, chunk)
      else send(res, frame('reset', Math.max(lastId, cursor), '{}'))
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
      broadcast(frame('deleted', cursor, JSON.stringify({ id })))
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
