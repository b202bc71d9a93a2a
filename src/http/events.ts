/**
 * GET /api/events: a Server-Sent Events stream of job changes, for the dashboard and any other client.
 *
 *   event: job      id: <event id>   data: <job JSON, as GET /api/jobs/:id returns it>   whenever the job's row changes
 *   event: deleted  id: <event id>   data: {"id":<id>}                                   after any deletion (API, retention)
 *   event: reset                     data: {}                                            too much to replay; reload the list
 *
 * Workers (and, on PostgreSQL, other nodes) write only to the database, so the server learns of changes by
 * reading the store's change feed (`changesAfter`, `feedHead`, `canResume`): every change after a cursor, in feed
 * order, once. Event ids are the feed's, opaque strings: this file never compares two of them for order, only for
 * equality. One poll loop, running only while at least one client is connected, reads the feed every POLL_MS,
 * one pass at a time (a pass waits for the store; the next is scheduled when it ends): live clients at the same
 * position share one read, so the usual case is one query per pass, and this server's own writes are seen the
 * same way as the workers'.
 *
 * A client reconnecting with Last-Event-ID gets exactly the changes after it, or `reset` when the store cannot
 * replay them (more than MAX_REPLAY changes, older than what the feed keeps, or an id it never gave).
 *
 * The stream cannot take the server down: clients are bounded in total and per address; a client is sent only
 * what fits under MAX_BUFFERED, checked before a frame is built; a client that is behind (resuming, or too slow
 * for the live stream) catches up on its own, one page at a time, waiting for 'drain' and yielding to the event
 * loop between pages; and a client that takes nothing in for STALL_MS is dropped.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsync } from 'fastify'
import { toJob } from '../jobs/store.js'
import type { AsyncJobStore, FeedChange } from '../store/job-store.js'

/** How the stream polls and what it admits; the defaults suit production, tests shorten them. */
export interface EventsTuning {
  /** Interval between two passes of the shared poller (ms). */
  pollMs: number
  /** Interval of the `: ping` comment that keeps proxies from closing an idle stream (ms). */
  heartbeatMs: number
  /** Most streams open at once; beyond it 503. */
  maxClients: number
  /** Most streams open at once from one client address; beyond it 429. */
  maxClientsPerAddress: number
  /** A client whose socket takes in nothing for this long is dropped (ms). */
  stallMs: number
}

/** What the events route needs. */
export interface EventsRoutesOptions {
  store: Pick<AsyncJobStore, 'changesAfter' | 'feedHead' | 'canResume'>
  /** Overrides of the defaults. */
  events?: Partial<EventsTuning>
}

const DEFAULTS: EventsTuning = { pollMs: 50, heartbeatMs: 15_000, maxClients: 100, maxClientsPerAddress: 10, stallMs: 60_000 }
/** Changes read and sent per page to a client that is catching up. */
const PAGE = 100
/** Most changes one pass of the shared poller reads per position; the rest wait for the next pass. */
const MAX_PER_TICK = 200
/** Most changes replayed to a client resuming with Last-Event-ID; beyond it the client is told to reload. */
const MAX_REPLAY = 5000
/** Most bytes waiting in one client's socket; what would go beyond waits until the client has read. */
const MAX_BUFFERED = 256 * 1024
/** A Last-Event-ID longer than this is not one the store gave: reset, without asking the store. */
const MAX_EVENT_ID_LENGTH = 200

const changeFrame = (change: FeedChange): string => change.row
  ? `id: ${change.eventId}\nevent: job\ndata: ${JSON.stringify(toJob(change.row))}\n\n`
  : `id: ${change.eventId}\nevent: deleted\ndata: {"id":${change.deleted}}\n\n`
const frame = (event: string, data: string): string => `event: ${event}\ndata: ${data}\n\n`

/** One open stream. */
interface Client {
  res: ServerResponse
  address: string
  /** Event id of the last change this client has been sent (or has told us it has); null until it is placed. */
  cursor: string | null
  /** Follows the shared poller; false while it is placed or catches up on its own. */
  live: boolean
  /** The stream has been opened (headers sent); before, the request still waits for its place in the feed. */
  open: boolean
}

/** Resolves when `res` can take more data, or has closed; false if it took nothing for `ms`. */
function drained (res: ServerResponse, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      res.off('drain', onDrain)
      res.off('close', onDrain)
      resolve(ok)
    }
    const onDrain = (): void => done(true)
    const timer = setTimeout(() => done(false), ms)
    res.on('drain', onDrain)
    res.on('close', onDrain)
  })
}

const nextTick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** The event id a client sent, or undefined when it sent none (an empty header is none). */
function lastEventId (header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header
  return value === undefined || value === '' ? undefined : value
}

/** GET /api/events. */
export const eventsRoutes: FastifyPluginAsync<EventsRoutesOptions> = async (app, options) => {
  const { store } = options
  const tuning: EventsTuning = { ...DEFAULTS, ...options.events }
  const clients = new Set<Client>()
  const perAddress = new Map<string, number>()
  /** The next pass of the poll loop, when one is scheduled. */
  let poller: NodeJS.Timeout | null = null
  /** A pass is reading the store: the next one is scheduled when it ends, never beside it. */
  let polling = false
  let pinger: NodeJS.Timeout | null = null
  let failing = false
  /** The server is closing: a request still waiting for its place in the feed gets no stream. */
  let closing = false
  /** Pages of every catching-up client go one at a time, one per turn of the event loop, whatever their number. */
  let turns: Promise<void> = Promise.resolve()
  const myTurn = (): Promise<void> => (turns = turns.then(nextTick))

  const logFailure = (err: unknown): void => {
    // Logged once per run of failures, not 20 times a second.
    if (!failing) app.log.error({ err }, 'event stream poll failed')
    failing = true
  }

  /**
   * Brings a client that is behind up to the end of the feed, a page at a time; each page is read and built only
   * when the client's socket has room for it. Then it follows the shared poller again, from where it stands.
   */
  const catchUp = async (client: Client): Promise<void> => {
    client.live = false
    const { res } = client
    try {
      while (!res.destroyed) {
        if (res.writableLength > MAX_BUFFERED || res.writableNeedDrain) {
          if (!(await drained(res, tuning.stallMs))) {
            app.log.warn({ address: client.address }, 'event stream client took nothing in for too long; dropping it')
            res.destroy()
          }
          continue
        }
        await myTurn()
        if (res.destroyed) return
        const page = await store.changesAfter(client.cursor, PAGE)
        failing = false
        if (res.destroyed) return
        if (page.length > 0) {
          res.write(page.map(changeFrame).join(''))
          client.cursor = page[page.length - 1].eventId
        }
        // A short page: nothing more was readable. What comes after is the poller's to send.
        if (page.length < PAGE) {
          client.live = true
          return
        }
      }
    } catch (err) {
      logFailure(err)
      res.destroy()
    }
  }

  /**
   * One pass: for each position live clients stand at (usually one, shared by all), the changes after it, sent
   * to every live client still there. A client without room for them catches up on its own instead.
   */
  const tick = async (): Promise<void> => {
    const positions = new Set<string>()
    for (const client of clients) if (client.live && client.cursor !== null) positions.add(client.cursor)
    for (const from of positions) {
      try {
        const changes = await store.changesAfter(from, MAX_PER_TICK)
        failing = false
        if (changes.length === 0) continue
        const to = changes[changes.length - 1].eventId
        let chunk: string | null = null
        for (const client of clients) {
          // Clients that moved meanwhile (or joined at this position while the store was read) are compared by id.
          if (!client.live || client.cursor !== from || client.res.destroyed) continue
          // Checked before the frames are built: a client without room catches up on its own, paced by its socket.
          if (client.res.writableLength > MAX_BUFFERED / 2) {
            catchUp(client).catch(logFailure)
            continue
          }
          chunk ??= changes.map(changeFrame).join('')
          client.res.write(chunk)
          client.cursor = to
        }
      } catch (err) {
        logFailure(err)
      }
    }
  }

  const schedule = (): void => {
    if (poller || polling || clients.size === 0) return
    poller = setTimeout(() => {
      poller = null
      polling = true
      tick().catch(logFailure).finally(() => {
        polling = false
        schedule()
      })
    }, tuning.pollMs)
    poller.unref()
  }

  const ping = (): void => {
    for (const client of clients) {
      if (client.live && client.res.writableLength < MAX_BUFFERED) client.res.write(': ping\n\n')
    }
  }

  const start = (): void => {
    schedule()
    if (!pinger) {
      pinger = setInterval(ping, tuning.heartbeatMs)
      pinger.unref()
    }
  }

  const stop = (): void => {
    // A pass in progress ends on its own and, with no client left, schedules no other.
    if (poller) clearTimeout(poller)
    if (pinger) clearInterval(pinger)
    poller = pinger = null
  }

  const refuse = (statusCode: 429 | 503, message: string) => ({
    statusCode, error: statusCode === 429 ? 'Too Many Requests' : 'Service Unavailable', message
  })

  app.get('/api/events', {
    schema: {
      summary: 'Live job changes (Server-Sent Events)',
      description: 'text/event-stream: `event: job` with the job JSON whenever a job changes, `event: deleted` ' +
        'with {id} after a delete, `event: reset` when a resume is too far behind. Event ids are opaque strings; send the last one as ' +
        'Last-Event-ID to resume; `: ping` every 15 s. ' +
        `At most ${tuning.maxClients} streams at once (503 beyond) and ${tuning.maxClientsPerAddress} per client address (429 beyond).`,
      tags: ['jobs'],
      headers: {
        type: 'object',
        properties: { 'last-event-id': { type: 'string', description: 'id of the last event received; resumes after it' } }
      }
    }
  }, async (req, reply) => {
    const address = req.ip
    if (clients.size >= tuning.maxClients) {
      return reply.code(503).header('retry-after', '10')
        .send(refuse(503, `too many event streams open (${tuning.maxClients}); retry later`))
    }
    if ((perAddress.get(address) ?? 0) >= tuning.maxClientsPerAddress) {
      return reply.code(429).header('retry-after', '10')
        .send(refuse(429, `too many event streams from this address (${tuning.maxClientsPerAddress}); close one first`))
    }

    // The place is taken now, before the store is asked where the client starts: the limits hold meanwhile.
    const res = reply.raw
    const client: Client = { res, address, cursor: null, live: false, open: false }
    clients.add(client)
    perAddress.set(address, (perAddress.get(address) ?? 0) + 1)
    let left = false
    const leave = (): void => {
      if (left) return
      left = true
      clients.delete(client)
      const others = (perAddress.get(address) ?? 1) - 1
      if (others > 0) perAddress.set(address, others)
      else perAddress.delete(address)
      if (clients.size === 0) stop()
    }
    res.on('close', leave)

    // Where the client starts, before the stream opens: every change committed once it is open comes after it
    // (what was committed before is in the page's own fetch, made after the stream opens). A client resuming
    // starts at its last id if the store can replay from there; otherwise it is told to reset.
    const lastId = lastEventId(req.headers['last-event-id'])
    let resume = false
    try {
      if (lastId !== undefined && lastId.length <= MAX_EVENT_ID_LENGTH && !/[\r\n]/.test(lastId)) {
        resume = await store.canResume(lastId, MAX_REPLAY)
      }
      client.cursor = resume ? (lastId as string) : await store.feedHead()
      failing = false
    } catch (err) {
      leave()
      logFailure(err)
      return reply.code(503).header('retry-after', '10')
        .send(refuse(503, 'the change feed cannot be read now; retry later'))
    }
    if (res.destroyed) {
      leave()
      reply.hijack()
      return
    }
    if (closing) {
      leave()
      return reply.code(503).send(refuse(503, 'the server is closing'))
    }

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
    client.open = true
    if (lastId !== undefined && !resume) res.write(frame('reset', '{}'))
    start()
    // Resume: the changes after the client's last id, caught up at the client's pace; later ones come live.
    if (resume) catchUp(client).catch(logFailure)
    else client.live = true
  })

  // Streams never end on their own; end them so that close() does not wait for clients.
  app.addHook('preClose', (done) => {
    closing = true
    for (const client of clients) if (client.open) client.res.end()
    clients.clear()
    perAddress.clear()
    stop()
    done()
  })
}
