// Helpers shared by the benchmarks: machine description, statistics, temp databases, real servers on
// 127.0.0.1 that are always killed, and the result rows every bench prints.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { serverNodeFlags } from '../scripts/server-flags.js'

export const ROOT = fileURLToPath(new URL('../', import.meta.url))
export const DIST = join(ROOT, 'dist')
export const RESULTS_DIR = join(ROOT, 'bench', 'results')

export { sleep }

// ---- machine -------------------------------------------------------------------------------------------

/** CPU model, cores, memory, node version and date, for the report header. */
export function machine () {
  let model = cpus()[0]?.model ?? 'unknown'
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'))
    if (line) model = line.split(':')[1].trim()
  } catch {
    // Not Linux: keep os.cpus().
  }
  let flags = ''
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'))
    const f = line ? line.split(':')[1].trim().split(/\s+/) : []
    flags = ['avx2', 'avx512f', 'fma'].filter((x) => f.includes(x)).join(', ')
  } catch {
    // Ignore.
  }
  return {
    cpu: model,
    simd: flags,
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10,
    node: process.version,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  }
}

/** The CPUs this process may run on (Linux: Cpus_allowed_list), else 0 … count − 1. */
function allowedCpus () {
  try {
    const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('Cpus_allowed_list:'))
    const list = line.split(':')[1].trim().split(',').flatMap((part) => {
      const [a, b = a] = part.split('-').map(Number)
      return Array.from({ length: b - a + 1 }, (_, i) => a + i)
    })
    if (list.length > 0 && list.every(Number.isInteger)) return list
  } catch {
    // Not Linux.
  }
  return cpus().map((_, i) => i)
}

/**
 * How fast each CPU runs the same fixed loop: the CPU ms a fresh Node process pinned to it (`taskset -c`) spends on
 * it, best of 3, for at most 8 of the CPUs this process may use and within ~60 s in all. On a virtual machine the
 * vCPUs need not be equal: on the reference host one at times ran it at half the other's speed, so a CPU-time
 * figure depends on where the process ran. A CPU whose runs failed reads null; the whole is null without taskset.
 */
export function cpuSpeeds () {
  const loop = 'const t = process.cpuUsage(); let x = 0; for (let i = 0; i < 2e8; i++) x += i % 7; const u = process.cpuUsage(t); console.log(x > 0 ? (u.user + u.system) / 1000 : 0)'
  const until = Date.now() + 60_000
  const out = []
  for (const cpu of allowedCpus().slice(0, 8)) {
    const runs = []
    for (let i = 0; i < 3 && Date.now() < until; i++) {
      const r = spawnSync('taskset', ['-c', String(cpu), process.execPath, '-e', loop], { encoding: 'utf8', timeout: 20_000 })
      if (r.error?.code === 'ENOENT') return null
      const ms = Number(r.stdout?.trim())
      if (r.status === 0 && ms > 0) runs.push(ms)
    }
    out.push({ cpu, ms: runs.length > 0 ? Math.round(Math.min(...runs)) : null })
  }
  return out
}

/** Load average, to print next to results taken on a shared machine. */
export function loadavg () {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  } catch {
    return 'n/a'
  }
}

// ---- statistics ----------------------------------------------------------------------------------------

/** Percentile p (0..100) by nearest rank on a copy of `values`. */
export function pct (values, p) {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))
  return s[rank]
}

export const median = (values) => pct(values, 50)
export const round = (x, digits = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x)

// ---- result rows ---------------------------------------------------------------------------------------

/**
 * One line of the results table. `pass` is true, false, or null for a figure reported without a target.
 * @param {string} metric @param {string} target @param {string} measured @param {boolean|null} pass
 */
export const row = (metric, target, measured, pass) => ({ metric, target, measured, pass })

export const verdict = (pass) => (pass === null || pass === undefined ? 'info' : pass ? 'PASS' : 'FAIL')

/** Prints rows as an aligned table. */
export function printRows (title, rows) {
  const cells = rows.map((r) => [r.metric, r.target, r.measured, verdict(r.pass)])
  const head = ['metric', 'target', 'measured', 'result']
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => String(c[i]).length)))
  const line = (c) => c.map((x, i) => String(x).padEnd(w[i])).join('  ')
  console.log(`\n== ${title}`)
  console.log(line(head))
  for (const c of cells) console.log(line(c))
}

/** Writes one bench's outcome where bench/run.js picks it up, and prints it. */
export function report (name, outcome) {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const full = { name, machine: machine(), loadavg: loadavg(), ...outcome }
  writeFileSync(join(RESULTS_DIR, `${name}.json`), JSON.stringify(full, null, 2))
  // Also kept per Node major version, so that docs/benchmarks.md can show each version's latest run.
  const byNode = join(RESULTS_DIR, `node${process.versions.node.split('.')[0]}`)
  mkdirSync(byNode, { recursive: true })
  writeFileSync(join(byNode, `${name}.json`), JSON.stringify(full, null, 2))
  printRows(name, outcome.rows)
  return full
}

// ---- processes -----------------------------------------------------------------------------------------

const owned = new Set()

/** Remembers a child so that cleanup() kills it, whatever happens to the bench. */
export function own (child) {
  owned.add(child)
  child.once('exit', () => owned.delete(child))
  return child
}

/** Kills every child this bench started (and their workers, which share the process group). */
export function cleanup () {
  for (const child of owned) {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      try { child.kill('SIGKILL') } catch { /* already gone */ }
    }
  }
  owned.clear()
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanup()
    process.exit(130)
  })
}
process.on('exit', cleanup)

/** A fresh folder under the system temp dir, removed by the returned function. */
export function tempDir (tag) {
  const dir = mkdtempSync(join(tmpdir(), `nonstop-bench-${tag}-`))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Reads a field (kB) of /proc/<pid>/status, e.g. VmRSS or VmHWM; NaN once the process is gone. */
export function procKb (pid, field) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))
    return m ? Number(m[1]) : NaN
  } catch {
    return NaN
  }
}

/** Opens (and migrates) a database with the project's own code. */
export async function openStore (dbPath) {
  const { openDb, migrate } = await import('../dist/db.js')
  const { createJobStore } = await import('../dist/jobs/store.js')
  mkdirSync(dirname(dbPath), { recursive: true })
  const db = openDb(dbPath)
  migrate(db)
  return { db, store: createJobStore(db) }
}

/** A TCP port that is free on 127.0.0.1 right now (the kernel picks it), so benches never meet another server. */
function freePort () {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}

/** The node flags `npm start` gives the server (scripts/server-flags.js), so the bench measures the server as it is run. */
export const SERVER_NODE_FLAGS = serverNodeFlags()

/**
 * Starts `node dist/server.js` on 127.0.0.1 in a process group of its own, waits for /healthz, and returns
 * { url, pid, stop }. stop() sends SIGTERM, then SIGKILL to the group after a grace period.
 */
export async function startServer (env = {}) {
  const port = await freePort()
  const child = own(spawn(process.execPath, [...SERVER_NODE_FLAGS, join(DIST, 'server.js')], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      RATE_LIMIT_MAX: '1000000',
      MAX_PENDING: '1000000',
      RETENTION_DAYS: '0',
      ...env
    }
  }))
  let stderr = ''
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000) })
  const url = `http://127.0.0.1:${port}`
  const until = Date.now() + 20_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${stderr}`)
    try {
      const res = await fetch(`${url}/healthz`)
      if (res.ok) break
    } catch {
      // Not listening yet.
    }
    if (Date.now() > until) throw new Error(`server did not answer /healthz within 20 s: ${stderr}`)
    await sleep(50)
  }
  await sleep(100)
  if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} (port ${port} taken?): ${stderr}`)
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      console.error(`server had exited by itself (${child.exitCode ?? child.signalCode}): ${stderr}`)
      return
    }
    const exited = new Promise((resolve) => child.once('exit', resolve))
    try { process.kill(child.pid, 'SIGTERM') } catch { /* gone */ }
    await Promise.race([exited, sleep(8000)])
    try { process.kill(-child.pid, 'SIGKILL') } catch { /* gone */ }
  }
  return { url, pid: child.pid, child, stop, stderr: () => stderr }
}

/** POSTs a job and returns { status, body }. */
export async function submit (url, params) {
  const res = await fetch(`${url}/api/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(params)
  })
  let body = null
  try { body = await res.json() } catch { /* no body */ }
  return { status: res.status, body }
}

export async function getJob (url, id) {
  const res = await fetch(`${url}/api/jobs/${id}`)
  return res.json()
}

/** Polls a job until `pred(job)` holds or `ms` pass; returns the last job seen. */
export async function waitJob (url, id, pred, ms = 30_000, every = 10) {
  const until = Date.now() + ms
  let job = await getJob(url, id)
  while (!pred(job) && Date.now() < until) {
    await sleep(every)
    job = await getJob(url, id)
  }
  return job
}

/** True when this file is the script node was started with (so a bench also runs on its own). */
export const isMain = (metaUrl) => process.argv[1] && fileURLToPath(metaUrl) === process.argv[1]
