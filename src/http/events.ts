/**
 * GET /api/events: a Server-Sent Events stream of job changes, for the dashboard and any other client.
 *
 *   event: job      id: <version>   data: <job JSON, as GET /api/jobs/:id returns it>   whenever the job's row changes
 *   event: deleted  id: <number>    data: {"id":<id>}                                   after any deletion (API, retention)
 *   event: reset                    data: {}                                            too much to replay; reload the list
 *
 * Workers write only to SQLite, so the server learns of changes by reading it. Every write to a job, and every
 * deletion (as a tombstone), takes the next number of a change counter that only ever increases, inside its own
 * transaction (migrations/004), so the numbers follow commit order. One shared poller, running only while at
 * least one client is connected, reads the changes after the last number it sent (`store.changesAfter`,
 * indexed) every POLL_MS: a few µs when nothing changed, and this server's own writes are seen the same way as
 * the workers'.
 *
 * Event ids are those numbers. A client reconnecting with Last-Event-ID gets exactly the changes after it, or
 * `reset` when that is more than MAX_REPLAY changes or older than the tombstones kept.
 *
 * The stream cannot take the server down: clients are bounded in total and per address; a client is sent only
 * what fits under MAX_BUFFERED, checked before a frame is built; a client that is behind (resuming, or too slow
 * for the live stream) catches up on its own, one page at a time, waiting for 'drain' and yielding to the event
 * loop between pages; and a client that takes nothing in for STALL_MS is dropped.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsync } from 'fastify'
import { type Change, type JobStore, toJob } from '../jobs/store.js'

/** How the stream polls and what it admits; the defaults suit production, tests shorten them. */
export interface EventsTuning {
  /** Interval of the shared poller (ms). */
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
  store: Pick<JobStore, 'changesAfter' | 'countChanges' | 'latestSeq' | 'resumableAfter'>
  /** Overrides of the defaults. */
  events?: Partial<EventsTuning>
}

const DEFAULTS: EventsTuning = { pollMs: 50, heartbeatMs: 15_000, maxClients: 100, maxClientsPerAddress: 10, stallMs: 60_000 }
/** Changes read and sent per page to a client that is catching up. */
const PAGE = 100
/** Most changes one tick of the shared poller sends; the rest wait for the next tick. */
const MAX_PER_TICK = 200
/** Most changes replayed to a client resuming with Last-Event-ID; beyond it the client is told to reload. */
const MAX_REPLAY = 5000
/** Most bytes waiting in one client's socket; what would go beyond waits until the client has read. */
const MAX_BUFFERED = 256 * 1024

const changeFrame = (change: Change): string => change.row
  ? `id: ${change.seq}\nevent: job\ndata: ${JSON.stringify(toJob(change.row))}\n\n`
  : `id: ${change.seq}\nevent: deleted\ndata: {"id":${change.deleted}}\n\n`
const frame = (event: string, data: string): string => `event: ${event}\ndata: ${data}\n\n`

/** One open stream. */
interface Client {
  res: ServerResponse
  address: string
  /** Number of the last change this client has been sent (or has told us it has). */
  cursor: number
  /** Follows the shared poller; false while it catches up on its own. */
  live: boolean
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

/** GET /api/events. */
export const eventsRoutes: FastifyPluginAsync<EventsRoutesOptions> = async (app, options) => {
  const { store } = options
  const tuning: EventsTuning = { ...DEFAULTS, ...options.events }
  const clients = new Set<Client>()
  const perAddress = new Map<string, number>()
  /** Number of the last change the shared poller has read. */
  let cursor = 0
  let poller: NodeJS.Timeout | null = null
  let pinger: NodeJS.Timeout | null = null
  let failing = false
  /** Pages of every catching-up client go one at a time, one per turn of the event loop, whatever their number. */
  let turns: Promise<void> = Promise.resolve()
  const myTurn = (): Promise<void> => (turns = turns.then(nextTick))

  const logFailure = (err: unknown): void => {
    // Logged once per run of failures, not 20 times a second.
    if (!failing) app.log.error({ err }, 'event stream poll failed')
    failing = true
  }

  /**
   * Brings a client that is behind up to the shared cursor, a page at a time; each page is built only when the
   * client's socket has room for it. Then it follows the shared poller again.
   */
  const catchUp = async (client: Client): Promise<void> => {
    client.live = false
    const { res } = client
    try {
      while (!res.destroyed) {
        if (client.cursor >= cursor) {
          client.live = true
          return
        }
        if (res.writableLength > MAX_BUFFERED || res.writableNeedDrain) {
          if (!(await drained(res, tuning.stallMs))) {
            app.log.warn({ address: client.address }, 'event stream client took nothing in for too long; dropping it')
            res.destroy()
          }
          continue
        }
        await myTurn()
        if (res.destroyed) return
        const page = store.changesAfter(client.cursor, PAGE)
        const upTo = cursor
        const inRange = page.filter((c) => c.seq <= upTo)
        // A full page entirely in range may have more behind it; otherwise everything up to `upTo` has been read.
        const next = inRange.length === PAGE ? inRange[PAGE - 1].seq : upTo
        if (inRange.length > 0) res.write(inRange.map(changeFrame).join(''))
        client.cursor = next
        failing = false
      }
    } catch (err) {
      logFailure(err)
      res.destroy()
    }
  }

  const tick = (): void => {
    try {
      const changes = store.changesAfter(cursor, MAX_PER_TICK)
      failing = false
      if (changes.length === 0) return
      const to = changes[changes.length - 1].seq
      // Moved first: a client sent off to catch up below must catch up to here.
      cursor = to
      let chunk: string | null = null
      for (const client of clients) {
        if (!client.live) continue
        // A client resuming from a number just ahead of the shared cursor has these already.
        if (client.cursor >= to) continue
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

  const ping = (): void => {
    for (const client of clients) {
      if (client.live && client.res.writableLength < MAX_BUFFERED) client.res.write(': ping\n\n')
    }
  }

  const start = (): void => {
    // What was committed before the first client connected is in the page's own fetch, made after the stream opens.
    cursor = store.latestSeq()
    poller = setInterval(tick, tuning.pollMs)
    poller.unref()
    pinger = setInterval(ping, tuning.heartbeatMs)
    pinger.unref()
  }

  const stop = (): void => {
    if (poller) clearInterval(poller)
    if (pinger) clearInterval(pinger)
    poller = pinger = null
  }

  const refuse = (statusCode: 429 | 503, message: string) => ({
    statusCode, error: statusCode === 429 ? 'Too Many Requests' : 'Service Unavailable', message
  })

  app.get('/api/events', {
    schema: {
      summary: 'Live job changes (Server-Sent Events)',
      description: 'text/event-stream: `event: job` with the job JSON whenever a job changes (id: the job\'s version), `event: deleted` ' +
        'with {id} after a delete, `event: reset` when a resume is too far behind. Send Last-Event-ID to resume; `: ping` every 15 s. ' +
        `At most ${tuning.maxClients} streams at once (503 beyond) and ${tuning.maxClientsPerAddress} per client address (429 beyond).`,
      tags: ['jobs'],
      headers: {
        type: 'object',
        properties: { 'last-event-id': { type: 'string', description: 'id of the last event received; resumes after it' } }
      }
    }
  }, (req, reply) => {
    const address = req.ip
    if (clients.size >= tuning.maxClients) {
      return reply.code(503).header('retry-after', '10')
        .send(refuse(503, `too many event streams open (${tuning.maxClients}); retry later`))
    }
    if ((perAddress.get(address) ?? 0) >= tuning.maxClientsPerAddress) {
      return reply.code(429).header('retry-after', '10')
        .send(refuse(429, `too many event streams from this address (${tuning.maxClientsPerAddress}); close one first`))
    }

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
    const client: Client = { res, address, cursor, live: true }
    clients.add(client)
    perAddress.set(address, (perAddress.get(address) ?? 0) + 1)
    res.on('close', () => {
      clients.delete(client)
      const left = (perAddress.get(address) ?? 1) - 1
      if (left > 0) perAddress.set(address, left)
      else perAddress.delete(address)
      if (clients.size === 0) stop()
    })

    // Resume: the changes after the client's last id, caught up at the client's pace; later ones come live.
    const header = req.headers['last-event-id']
    const lastId = Number(header)
    if (header === undefined || header === '' || !Number.isSafeInteger(lastId) || lastId < 0) return
    try {
      const complete = lastId <= store.latestSeq() && lastId >= store.resumableAfter() &&
        store.countChanges(lastId, cursor, MAX_REPLAY) <= MAX_REPLAY
      if (!complete) {
        res.write(frame('reset', '{}'))
        return
      }
      client.cursor = lastId
      catchUp(client).catch(logFailure)
    } catch (err) {
      logFailure(err)
      res.destroy()
    }
  })

  // Streams never end on their own; end them so that close() does not wait for clients.
  app.addHook('preClose', (done) => {
    for (const client of clients) client.res.end()
    clients.clear()
    perAddress.clear()
    stop()
    done()
  })
}
