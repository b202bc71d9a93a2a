// Worker boot: fork dist/jobs/worker.js the way the scheduler does (token in argv, NONSTOP_* env, ipc
// channel), claim a job for its token through the store at once, and time fork → DB opened ("ready") and
// fork → first heartbeat with its pid (the worker writes heartbeat_at with its own clock). Then the pick-up
// latency of an already booted spare, Node's bare fork cost, and the worker's RSS while it computes n = 1000.
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { WORKER_ENTRY, workerExecArgv } from '../dist/jobs/scheduler.js'
import { isMain, median, openStore, own, pct, procKb, report, round, sleep, tempDir } from './lib.js'

const newJob = (n, steps) => ({
  type: 'lyapunov', name: null, params: { n, steps, seed: 1 }, steps, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null
})

/** Preloaded into a worker only when asked: at exit, writes the CPU time the process used to a file. */
const USAGE_HOOK = `import { writeFileSync } from 'node:fs'
process.on('exit', () => {
  const u = process.resourceUsage()
  writeFileSync(process.env.BENCH_USAGE_FILE, JSON.stringify({ cpuMs: (u.userCPUTime + u.systemCPUTime) / 1000, maxRssKb: u.maxRSS }))
})
`

/** Forks a worker exactly as scheduler.spawnWorker does (plus, with `usageFile`, the CPU-time hook). */
function spawnWorker (dbPath, token, { nice = 10, usageFile = null } = {}) {
  return own(fork(WORKER_ENTRY, [token], {
    env: {
      ...process.env,
      NONSTOP_DB_PATH: dbPath,
      NONSTOP_HEARTBEAT_MS: '1000',
      NONSTOP_CHECKPOINT_MS: '2000',
      NONSTOP_WORKER_NICE: String(nice),
      LOG_LEVEL: 'warn',
      LOG_FILE: '',
      ...(usageFile ? { BENCH_USAGE_FILE: usageFile } : {})
    },
    execArgv: usageFile ? [...workerExecArgv(), '--import', `data:text/javascript,${encodeURIComponent(USAGE_HOOK)}`] : workerExecArgv(),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  }))
}

const exited = (child) => (child.exitCode !== null || child.signalCode !== null
  ? Promise.resolve()
  : new Promise((resolve) => child.once('exit', resolve)))

/** Resolves with the time the process first has `file` open (polled every 2 ms), or null. */
function whenOpens (pid, file, ms = 10_000) {
  return new Promise((resolve) => {
    const until = Date.now() + ms
    const timer = setInterval(() => {
      try {
        for (const fd of readdirSync(`/proc/${pid}/fd`)) {
          let target = ''
          try { target = readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { continue }
          if (target === file) {
            clearInterval(timer)
            resolve(Date.now())
            return
          }
        }
      } catch {
        clearInterval(timer)
        resolve(null)
        return
      }
      if (Date.now() > until) {
        clearInterval(timer)
        resolve(null)
      }
    }, 2)
  })
}

export async function run ({ reps = 8 } = {}) {
  const tmp = tempDir('boot')
  const dbPath = join(tmp.dir, 'boot.db')
  const { db, store } = await openStore(dbPath)
  const notes = []
  try {
    // Node's own cost: fork → exit of an empty module, with the same ipc channel.
    const empty = join(tmp.dir, 'empty.mjs')
    writeFileSync(empty, 'process.channel?.unref()\n')
    const bare = []
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      await exited(own(fork(empty, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })))
      bare.push(performance.now() - t0)
    }

    // Cold path (what WARM_SPARE=false does for every job): fork, claim at once, wait for the first beat.
    // Alternates niceness 10 (the default WORKER_NICE) and 0, so both see the same machine load.
    const toBeat = []
    const toBeatNice0 = []
    const toReady = []
    for (let i = 0; i < reps * 2; i++) {
      const nice = i % 2 === 0 ? 10 : 0
      const { row } = store.submit(newJob(2, 1), 1e9)
      const token = randomBytes(8).toString('hex')
      const forkedAt = Date.now()
      const child = spawnWorker(dbPath, token, { nice })
      store.claimNext(token)
      const opened = nice === 10 ? await whenOpens(child.pid, dbPath) : null
      await exited(child)
      const done = store.get(row.id)
      if (done.status !== 'done') throw new Error(`boot job ${row.id} ended ${done.status}: ${done.error}`)
      ;(nice === 10 ? toBeat : toBeatNice0).push(done.heartbeat_at - forkedAt)
      if (opened !== null) toReady.push(opened - forkedAt)
      await sleep(100)
    }

    // CPU time a whole tiny-job worker uses (boot + claim + n = 2 + exit): independent of machine load.
    const cpu = []
    for (let i = 0; i < 5; i++) {
      const usageFile = join(tmp.dir, `usage-${i}.json`)
      store.submit(newJob(2, 1), 1e9)
      const token = randomBytes(8).toString('hex')
      const child = spawnWorker(dbPath, token, { usageFile })
      store.claimNext(token)
      await exited(child)
      try { cpu.push(JSON.parse(readFileSync(usageFile, 'utf8')).cpuMs) } catch { /* hook did not run */ }
    }

    // Warm path: a spare that has booted and polls; claim for it and time claim → first heartbeat.
    const pickup = []
    for (let i = 0; i < 6; i++) {
      const token = randomBytes(8).toString('hex')
      const child = spawnWorker(dbPath, token)
      await sleep(1000)
      const { row } = store.submit(newJob(2, 1), 1e9)
      const claimedAt = Date.now()
      store.claimNext(token)
      await exited(child)
      pickup.push(store.get(row.id).heartbeat_at - claimedAt)
    }

    // RSS of a worker computing n = 1000 (three steps, so at least one checkpoint is serialized and written).
    const { row } = store.submit(newJob(1000, 3), 1e9)
    const token = randomBytes(8).toString('hex')
    const child = spawnWorker(dbPath, token)
    store.claimNext(token)
    let hwm = 0
    let rss = 0
    const until = Date.now() + 45_000
    while (child.exitCode === null && Date.now() < until) {
      const h = procKb(child.pid, 'VmHWM')
      const r = procKb(child.pid, 'VmRSS')
      if (h > hwm) hwm = h
      if (r > rss) rss = r
      await sleep(100)
    }
    const rssRow = store.get(row.id)
    if (child.exitCode === null) child.kill('SIGKILL')
    await exited(child)
    const hwmMb = round(hwm / 1024, 0)
    notes.push(`RSS job reached step ${rssRow.step} of 3 (status ${rssRow.status}) while it was watched; peak VmRSS seen ${round(rss / 1024, 0)} MB, VmHWM ${hwmMb} MB.`)

    const bootP50 = median(toBeat)
    return {
      rows: [
        { metric: 'worker boot: fork → first heartbeat (pid set), median', target: '≤ 250 ms', measured: `${round(bootP50, 0)} ms (p90 ${round(pct(toBeat, 90), 0)}, n=${toBeat.length})`, pass: bootP50 <= 250 },
        { metric: 'same at niceness 0 (alternating runs), median', target: '—', measured: `${round(median(toBeatNice0), 0)} ms (p90 ${round(pct(toBeatNice0, 90), 0)})`, pass: null },
        { metric: 'CPU time of a whole tiny-job worker (boot + job + exit), median', target: '—', measured: `${round(median(cpu), 0)} ms`, pass: null },
        { metric: 'worker boot: fork → ready (DB opened, all imports done), median', target: '—', measured: `${round(median(toReady), 0)} ms (p90 ${round(pct(toReady, 90), 0)})`, pass: null },
        { metric: 'warm spare: claim → first heartbeat, median', target: '—', measured: `${round(median(pickup), 1)} ms (max ${round(Math.max(...pickup), 1)})`, pass: null },
        { metric: 'bare node fork → exit (empty module), median', target: '—', measured: `${round(median(bare), 0)} ms`, pass: null },
        { metric: 'worker peak RSS (VmHWM) computing n=1000', target: '≤ 250 MB', measured: `${hwmMb} MB`, pass: hwmMb <= 250 }
      ],
      samples: { toBeat, toBeatNice0, toReady, pickup, bare, cpu },
      notes
    }
  } finally {
    db.close()
    tmp.remove()
  }
}

if (isMain(import.meta.url)) report('boot', await run())
