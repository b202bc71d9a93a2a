import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { migrate, openDb } from '../../src/db.js'
import { createJobStore } from '../../src/jobs/store.js'
import { freePort, npmStartFlags, ROOT, waitFor } from '../fixtures/helpers.js'

const JOBS = 5000
const CLIENTS = 40

/** Resident memory of a process, from /proc (kB). */
const rssKb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])

/** A raw HTTP connection asking for the whole history and then never reading. */
async function nonReader (port: number, localAddress: string): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', localAddress })
  await once(socket, 'connect')
  socket.pause()
  socket.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nLast-Event-ID: 1\r\n\r\n`)
  return socket
}

t.test(`${CLIENTS} stream clients replaying ${JOBS} jobs without reading leave the server alive, responsive and its memory bounded`, async (t) => {
  const dir = t.testdir({})
  const dbPath = join(dir, 'load.db')
  const db = openDb(dbPath)
  migrate(db)
  const store = createJobStore(db)
  db.transaction(() => {
    for (let i = 0; i < JOBS; i++) {
      const { row } = store.submit({ type: 'lyapunov', name: `job ${i} ${'x'.repeat(100)}`, params: { n: 2, steps: 2, seed: i }, steps: 2, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null }, JOBS + 1)
      store.cancel(row.id)
    }
  })()
  db.close()

  const port = await freePort()
  // The memory flags `npm start` uses (scripts/server-flags.js).
  const flags = npmStartFlags()
  t.ok(flags.includes('--max-old-space-size=128'), `npm start's flags: ${flags.join(' ')}`)
  const proc = spawn(process.execPath, [...flags, join(ROOT, 'dist/server.js')], {
    cwd: dir,
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), DB_PATH: dbPath, LOG_FILE: join(dir, 'server.log'), LOG_LEVEL: 'warn', WARM_SPARE: 'false' },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  proc.stderr.on('data', (c) => { stderr += c })
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL') })
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => {
    if (proc.exitCode !== null) throw new Error(`server exited ${proc.exitCode}: ${stderr}`)
    try { return (await fetch(`${url}/healthz`)).ok } catch { return false }
  }, 30_000, 'the server to answer')
  const idleKb = rssKb(proc.pid!)

  // Ten addresses (the per-address limit), four clients each.
  const sockets: Socket[] = []
  t.teardown(() => { for (const s of sockets) s.destroy() })
  for (let i = 0; i < CLIENTS; i++) sockets.push(await nonReader(port, `127.0.0.${2 + (i % 10)}`))

  // One client that does read gets the whole history, in order, while the others sit there.
  const reader = connect({ port, host: '127.0.0.1' })
  t.teardown(() => reader.destroy())
  await once(reader, 'connect')
  let received = ''
  reader.setEncoding('utf8')
  reader.on('data', (chunk: string) => { received += chunk })
  reader.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nLast-Event-ID: 1\r\n\r\n`)

  let peakKb = idleKb
  const latencies: number[] = []
  const statuses = new Set<number>()
  const until = Date.now() + 6000
  while (Date.now() < until) {
    peakKb = Math.max(peakKb, rssKb(proc.pid!))
    const at = performance.now()
    const health = await fetch(`${url}/healthz`)
    latencies.push(performance.now() - at)
    statuses.add(health.status)
    await sleep(100)
  }
  const ids = [...received.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))
  await waitFor(() => (received.match(/^event: job$/gm)?.length ?? 0) >= JOBS - 1, 20_000, 'the reading client to get the whole replay')
  const events = received.match(/^event: job$/gm)?.length ?? 0
  t.ok(events >= JOBS - 1, `the reading client got every job after id 1 (${events})`)
  t.same(ids, [...ids].sort((a, b) => a - b), 'in order')

  latencies.sort((a, b) => a - b)
  const p95 = latencies[Math.floor(latencies.length * 0.95)]
  t.comment(`RSS idle ${Math.round(idleKb / 1024)} MB, peak ${Math.round(peakKb / 1024)} MB with ${CLIENTS} non-reading clients; /healthz p50 ${latencies[latencies.length >> 1].toFixed(1)} ms, p95 ${p95.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms over ${latencies.length} calls`)
  t.same([...statuses], [200], '/healthz answered 200 every time')
  t.equal(proc.exitCode, null, 'the server is alive')
  t.ok(peakKb - idleKb < 64 * 1024, `RSS grew by less than 64 MB (${Math.round((peakKb - idleKb) / 1024)} MB)`)
  t.ok(p95 < 250, `/healthz p95 under 250 ms (${p95.toFixed(1)} ms)`)
  t.notMatch(stderr, /heap limit|FATAL/, 'no heap exhaustion')

  for (const s of sockets) s.destroy()
  reader.destroy()
  proc.kill('SIGTERM')
  const [code] = await once(proc, 'exit')
  t.equal(code, 0, 'and it still stops cleanly')
})
