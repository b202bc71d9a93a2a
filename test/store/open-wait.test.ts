// Reaching PostgreSQL at start when its host never answers: a connection is given up after its timeout and tried
// again while DB_WAIT_SECONDS lasts, instead of one connect waiting for as long as the operating system lets it.
// The "host" is a real socket on 127.0.0.1 that accepts connections and never says a word (as a proxy in front of
// a dead database, or a host that drops packets after the handshake).
import { createServer, type Socket } from 'node:net'
import t from 'tap'
import { openStoresWaiting } from '../../src/store/open.js'
import { CONNECT_TIMEOUT_MS, openPostgres } from '../../src/store/postgres.js'

/** A TCP server that accepts and stays silent; closed, with its sockets, at teardown. */
async function silentHost (): Promise<{ url: string, accepted: () => number }> {
  const sockets = new Set<Socket>()
  let accepted = 0
  const server = createServer((socket) => {
    accepted++
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  }))
  const { port } = server.address() as { port: number }
  return { url: `postgres://nonstop:secret@127.0.0.1:${port}/nonstop`, accepted: () => accepted }
}

/** Rejects with "still waiting" after `ms`, so that a connect that never gives up fails the test instead of hanging it. */
function within<T> (ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms) })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

t.test('a pool gives up a connection that is not ready in time, by default after CONNECT_TIMEOUT_MS', async (t) => {
  const pool = openPostgres('postgres://nonstop@127.0.0.1:1/nonstop')
  t.teardown(() => pool.end())
  t.equal((pool.options as { connectionTimeoutMillis?: number }).connectionTimeoutMillis, CONNECT_TIMEOUT_MS, 'the default timeout is set')
  t.ok(CONNECT_TIMEOUT_MS > 0 && CONNECT_TIMEOUT_MS <= 30_000, 'and it is bounded')
})

t.test('a silent host: each try times out, the node tries again while DB_WAIT_SECONDS lasts, then gives up', async (t) => {
  const host = await silentHost()
  const retries: string[] = []
  const started = Date.now()
  const err = await within(10_000, openStoresWaiting(
    { databaseUrl: host.url, dbPath: '', pgPoolMax: 2, dbWaitSeconds: 2 },
    { role: 'server', connectTimeoutMs: 400 },
    (e) => { retries.push(e.message) }
  )).then(() => undefined, (e: Error) => e)
  const took = Date.now() - started
  t.ok(err, 'the start fails')
  t.match(err?.message, /timeout/, `with the timeout (${err?.message})`)
  t.ok(retries.length >= 1, `tried again while waiting (${retries.length} retries)`)
  t.ok(retries.every((m) => /timeout/.test(m)), 'each retry for the same reason')
  t.ok(host.accepted() >= 2, `every try connected anew (${host.accepted()} connections)`)
  t.ok(took >= 2000 && took < 6000, `gave up soon after the wait (${took} ms)`)
})
