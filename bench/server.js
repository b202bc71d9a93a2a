// The server with 100 000 jobs in its table: RSS, list latencies (first page, deep page, each status filter)
// and HTTP responsiveness under autocannon, each idle and then while two n = 1000 workers compute.
import { readFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import autocannon from 'autocannon'
import { isMain, openStore, pct, procKb, report, round, sleep, startServer, submit, tempDir, waitJob } from './lib.js'

const ROWS = 100_000

/** Fills the table with ROWS finished jobs (85 % done, 8 % failed, 7 % canceled) in one transaction. */
async function fill (dbPath) {
  const { db } = await openStore(dbPath)
  const insert = db.prepare(`INSERT INTO jobs (params, status, step, steps, progress, result, error, attempts, lease,
    created_at, started_at, finished_at, updated_at) VALUES (@params, @status, @step, @steps, @progress, @result, @error,
    1, 1, @created, @created, @finished, @finished)`)
  const t0 = performance.now()
  const start = Date.now() - ROWS * 5000
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) {
      const r = i % 100
      const status = r < 85 ? 'done' : r < 93 ? 'failed' : 'canceled'
      const n = 50 + (i % 20) * 50
      const steps = 10 + (i % 7) * 10
      const created = start + i * 5000
      insert.run({
        params: JSON.stringify({ n, steps, seed: (i * 2654435761) >>> 0 }),
        status,
        step: status === 'done' ? steps : Math.floor(steps / 2),
        steps,
        progress: status === 'done' ? 100 : 50,
        result: status === 'done'
          ? JSON.stringify({ lyapunov: 2.1 + i / 1e6, theory: 2.1, trace: 0.0123 * i, elapsedMs: 1234 + i, gflops: 0.6 })
          : null,
        error: status === 'failed' ? 'worker exited with code 1 (attempt 3 of 3)' : null,
        created,
        finished: created + 4000
      })
    }
  }).immediate()
  db.pragma('wal_checkpoint(TRUNCATE)')
  db.close()
  return performance.now() - t0
}

/** `count` sequential GETs of `path` on one keep-alive connection; latency of each in ms. */
async function sequential (url, path, count) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const once = () => new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = request(`${url}${path}`, { agent }, (res) => {
      res.on('data', () => {})
      res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`${path}: ${res.statusCode}`))))
    })
    req.on('error', reject)
    req.end()
  })
  const out = []
  for (let i = 0; i < count; i++) out.push(await once())
  agent.destroy()
  return out
}

/** CPU time (ms) a process has used so far, from /proc/<pid>/stat (10 ms ticks). */
function cpuOf (pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return NaN
  }
}

/** autocannon for `seconds` with 10 connections; per-response latencies (ms, sub-ms resolution). */
function cannon (url, path, seconds) {
  return new Promise((resolve, reject) => {
    const latencies = []
    let non2xx = 0
    const instance = autocannon({ url: `${url}${path}`, connections: 10, duration: seconds }, (err, result) => {
      if (err) reject(err)
      else resolve({ latencies, rps: result.requests.average, non2xx: non2xx + result.errors })
    })
    instance.on('response', (_client, statusCode, _bytes, ms) => {
      latencies.push(ms)
      if (statusCode < 200 || statusCode >= 300) non2xx++
    })
  })
}

const STORE_URLS = [
  ['first page', '/api/jobs?limit=50'],
  ['deep page (cursor=5000)', '/api/jobs?limit=50&cursor=5000'],
  ['status=pending', '/api/jobs?limit=50&status=pending'],
  ['status=running', '/api/jobs?limit=50&status=running'],
  ['status=done', '/api/jobs?limit=50&status=done'],
  ['status=failed', '/api/jobs?limit=50&status=failed'],
  ['status=canceled', '/api/jobs?limit=50&status=canceled']
]

async function phase (url, pid, seconds) {
  const store = {}
  const cpu = {}
  for (const [, path] of STORE_URLS) await sequential(url, path, 50) // warm-up: JIT and SQLite page cache
  for (const [name, path] of STORE_URLS) {
    const c0 = cpuOf(pid)
    store[name] = await sequential(url, path, 200)
    cpu[name] = (cpuOf(pid) - c0) / 200
  }
  const rssAfterStoreKb = procKb(pid, 'VmRSS')
  const list = await cannon(url, '/api/jobs', seconds)
  const page = await cannon(url, '/', seconds)
  return { store, cpu, list, page, rssAfterStoreKb }
}

export async function run ({ seconds = 8 } = {}) {
  const tmp = tempDir('server')
  const dbPath = `${tmp.dir}/scale.db`
  const fillMs = await fill(dbPath)
  const server = await startServer({ DB_PATH: dbPath, MAX_CONCURRENCY: '2' })
  const ids = []
  try {
    await sleep(1500)
    const rssIdleKb = procKb(server.pid, 'VmRSS')
    const anonIdleKb = procKb(server.pid, 'RssAnon')
    const idle = await phase(server.url, server.pid, seconds)

    for (const seed of [1, 2]) {
      const res = await submit(server.url, { n: 1000, steps: 500, seed })
      if (res.status !== 201) throw new Error(`submit answered ${res.status}`)
      ids.push(res.body.id)
    }
    for (const id of ids) {
      const job = await waitJob(server.url, id, (j) => j.status === 'running' && j.pid !== null, 20_000, 50)
      if (job.pid === null) throw new Error(`job ${id} did not start`)
    }
    await sleep(1000)
    const loaded = await phase(server.url, server.pid, seconds)
    const progressed = []
    for (const id of ids) {
      const job = await waitJob(server.url, id, () => true)
      progressed.push(`job ${id}: step ${job.step}, ${job.progress} %`)
    }
    const rssKb = procKb(server.pid, 'VmRSS')
    const hwmKb = procKb(server.pid, 'VmHWM')
    const anonKb = procKb(server.pid, 'RssAnon')
    const fileKb = procKb(server.pid, 'RssFile')
    for (const id of ids) await fetch(`${server.url}/api/jobs/${id}/cancel`, { method: 'POST' })

    const p99 = (xs) => pct(xs, 99)
    const rows = []
    const hwmMb = round(hwmKb / 1024, 0)
    const servingMb = round(idle.rssAfterStoreKb / 1024, 0)
    rows.push({ metric: 'server RSS with 100k jobs, after 1750 list requests (before autocannon)', target: '≤ 120 MB', measured: `${servingMb} MB (${round(rssIdleKb / 1024, 0)} MB right after start)`, pass: servingMb <= 120 })
    rows.push({ metric: 'server peak RSS (VmHWM) incl. 32 s of autocannon at ~1000 req/s', target: '≤ 120 MB', measured: `${hwmMb} MB (${round(rssKb / 1024, 0)} MB at the end)`, pass: hwmMb <= 120 })
    for (const [name] of STORE_URLS) {
      const a = p99(idle.store[name])
      const b = p99(loaded.store[name])
      rows.push({ metric: `GET /api/jobs ${name}, p99 idle / 2 workers`, target: '≤ 10 ms', measured: `${round(a, 2)} / ${round(b, 2)} ms`, pass: Math.max(a, b) <= 10 })
    }
    for (const [name, key] of [['GET /api/jobs', 'list'], ['GET /', 'page']]) {
      const a = p99(idle[key].latencies)
      const b = p99(loaded[key].latencies)
      rows.push({
        metric: `${name} p99 under autocannon (10 conn), idle → 2 workers`,
        target: '≤ 3× idle and ≤ 50 ms',
        measured: `${round(a, 1)} → ${round(b, 1)} ms (${round(b / a, 2)}×; ${round(idle[key].rps, 0)} → ${round(loaded[key].rps, 0)} req/s)`,
        pass: b <= 3 * a && b <= 50
      })
    }
    const errors = idle.list.non2xx + idle.page.non2xx + loaded.list.non2xx + loaded.page.non2xx
    const detail = [
      '| request | idle p50 | idle p99 | 2 workers p50 | 2 workers p99 | server CPU per request (idle) |',
      '|---|---|---|---|---|---|',
      ...STORE_URLS.map(([name]) => `| GET /api/jobs ${name} (sequential) | ${round(pct(idle.store[name], 50), 2)} | ${round(p99(idle.store[name]), 2)} | ${round(pct(loaded.store[name], 50), 2)} | ${round(p99(loaded.store[name]), 2)} | ${round(idle.cpu[name], 2)} |`),
      ...[['GET /api/jobs (autocannon)', 'list'], ['GET / (autocannon)', 'page']].map(([name, key]) =>
        `| ${name} | ${round(pct(idle[key].latencies, 50), 2)} | ${round(p99(idle[key].latencies), 2)} | ${round(pct(loaded[key].latencies, 50), 2)} | ${round(p99(loaded[key].latencies), 2)} | — |`),
      '',
      'Latencies and CPU in ms. Server CPU per request is from /proc/<pid>/stat (10 ms ticks over 200 requests) and does not depend on machine load the way latency does.'
    ].join('\n')
    return {
      rows,
      detail,
      notes: [
        `100 000 rows inserted in ${round(fillMs / 1000, 1)} s.`,
        `Server memory: RssAnon ${round(anonIdleKb / 1024, 0)} MB idle at start, ${round(anonKb / 1024, 0)} MB at the end; RssFile (node binary and mapped files) ${round(fileKb / 1024, 0)} MB at the end.`,
        `Work done by the two n = 1000 jobs while measured: ${progressed.join('; ')}.`,
        `Non-2xx responses or errors under autocannon: ${errors}.`
      ]
    }
  } finally {
    await server.stop()
    tmp.remove()
  }
}

if (isMain(import.meta.url)) report('server', await run())
