// Filters and bulk actions with 100 000 jobs: the p99 of filtered pages and counts (sequential, one keep-alive
// connection), then a bulk delete of every done job while another client keeps reading the list.
import { Agent, request } from 'node:http'
import { isMain, openStore, pct, report, round, startServer, tempDir } from './lib.js'

const ROWS = 100_000

/** ROWS jobs: 85 % done, 8 % failed, 7 % canceled; types lyapunov / matmul / matpow; one name in 50 "nightly". */
async function fill (dbPath) {
  const { db } = await openStore(dbPath)
  const insert = db.prepare(`INSERT INTO jobs (type, name, params, status, step, steps, progress, result, error, attempts,
    lease, created_at, started_at, finished_at, updated_at) VALUES (@type, @name, '{"n":50,"steps":10,"seed":1}', @status,
    10, 10, 100, @result, @error, 1, 1, @created, @created, @finished, @finished)`)
  const event = db.prepare("INSERT INTO job_events (job_id, at, kind, attempt, lease, step) VALUES (?, ?, 'submitted', 0, 0, 0)")
  const start = Date.now() - ROWS * 5000
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) {
      const r = i % 100
      const status = r < 85 ? 'done' : r < 93 ? 'failed' : 'canceled'
      const created = start + i * 5000
      const { lastInsertRowid } = insert.run({
        type: i % 20 === 0 ? 'matpow' : i % 7 === 0 ? 'matmul' : 'lyapunov',
        name: i % 50 === 0 ? `nightly run ${i}` : `run ${i}`,
        status,
        result: status === 'done' ? '{"elapsedMs":1234,"gflops":0.6}' : null,
        error: status === 'failed' ? 'worker exited with code 1 (attempt 3 of 3)' : null,
        created,
        finished: created + 4000
      })
      event.run(lastInsertRowid, created)
    }
  }).immediate()
  db.pragma('wal_checkpoint(TRUNCATE)')
  db.close()
  return start
}

const agentGet = (agent, url) => new Promise((resolve, reject) => {
  const t0 = performance.now()
  const req = request(url, { agent }, (res) => {
    res.on('data', () => {})
    res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`${url}: ${res.statusCode}`))))
  })
  req.on('error', reject)
  req.end()
})

async function sequential (url, count) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const out = []
  for (let i = 0; i < count; i++) out.push(await agentGet(agent, url))
  agent.destroy()
  return out
}

export async function run () {
  const tmp = tempDir('filters')
  const dbPath = `${tmp.dir}/filters.db`
  const start = await fill(dbPath)
  const server = await startServer({ DB_PATH: dbPath, MAX_CONCURRENCY: '1', RETENTION_DAYS: '0' })
  const day = new Date(start + 40_000 * 5000).toISOString()
  const dayEnd = new Date(start + 40_000 * 5000 + 86_400_000).toISOString()
  const urls = [
    ['status=failed&status=canceled', '/api/jobs?limit=50&status=failed&status=canceled'],
    ['type=matpow', '/api/jobs?limit=50&type=matpow'],
    ['status=failed&type=matmul', '/api/jobs?limit=50&status=failed&type=matmul'],
    ['name contains "nightly"', '/api/jobs?limit=50&name=nightly'],
    ['name contains a rare text (no match)', '/api/jobs?limit=50&name=zzz'],
    ['created within one day', `/api/jobs?limit=50&createdFrom=${day}&createdTo=${dayEnd}`],
    ['failed, deep page (cursor=5000)', '/api/jobs?limit=50&status=failed&cursor=5000'],
    ['counts, no filter', '/api/jobs/counts'],
    ['counts, type=matmul', '/api/jobs/counts?type=matmul'],
    ['counts, name contains "nightly"', '/api/jobs/counts?name=nightly'],
    ['counts, created within one day', `/api/jobs/counts?createdFrom=${day}&createdTo=${dayEnd}`],
    ['throughput (60 minutes)', '/api/stats/throughput']
  ]
  try {
    const rows = []
    const detail = ['| request | p50 | p99 |', '|---|---|---|']
    for (const [name, path] of urls) {
      await sequential(server.url + path, 20) // warm-up
      const times = await sequential(server.url + path, 200)
      const p99 = pct(times, 99)
      detail.push(`| ${name} | ${round(pct(times, 50), 2)} | ${round(p99, 2)} |`)
      rows.push({ metric: `GET ${name}, p99 (100k jobs)`, target: '≤ 20 ms', measured: `${round(p99, 2)} ms`, pass: p99 <= 20 })
    }

    // A bulk delete of every done job (85 000) while a second client reads the first page in a loop.
    const reading = { on: true }
    const during = []
    const reader = (async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      while (reading.on) during.push(await agentGet(agent, `${server.url}/api/jobs?limit=50`))
      agent.destroy()
    })()
    const t0 = performance.now()
    const res = await fetch(`${server.url}/api/jobs/bulk`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action: 'delete', filter: { status: ['done'] } }) })
    const took = performance.now() - t0
    const outcome = await res.json()
    reading.on = false
    await reader
    rows.push({ metric: 'bulk delete of every done job (85 000)', target: 'finishes', measured: `${outcome.changed} of ${outcome.matched} in ${round(took / 1000, 1)} s`, pass: res.status === 200 && outcome.changed === 85_000 })
    rows.push({ metric: 'GET /api/jobs first page during that bulk delete, p99', target: '≤ 100 ms', measured: `${round(pct(during, 99), 1)} ms (p50 ${round(pct(during, 50), 1)} ms, ${during.length} requests)`, pass: pct(during, 99) <= 100 })
    return {
      rows,
      detail: detail.join('\n'),
      notes: ['Latencies in ms, measured by the client on one keep-alive connection, 200 requests each after 20 warm-up ones.',
        'The bulk delete goes in transactions of 50 jobs, each followed by a pause as long as it held the write lock; each deletion leaves a tombstone for the live stream and takes the job\'s history with it.']
    }
  } finally {
    await server.stop()
    tmp.remove()
  }
}

if (isMain(import.meta.url)) report('filters', await run())
