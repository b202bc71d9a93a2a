// Worker boot: fork the worker the scheduler forks (the bundle dist/jobs/worker-bundle.cjs when built, else
// dist/jobs/worker.js; token in argv, NONSTOP_* env, ipc channel), claim a job for its token through the store at
// once, and time fork → DB opened ("ready") and fork → first heartbeat with its pid (the worker writes
// heartbeat_at with its own clock). Then the CPU a whole tiny-job worker uses next to an empty Node process's in
// the same run, the plain module's for comparison, the pick-up latency of an already booted spare, Node's bare
// fork cost, and the worker's RSS while it computes n = 1000 and n = 2000 on 1 and on 2 threads.
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { chooseWorkerEntry, inheritedEnv, WORKER_ENTRY, workerCompileCacheEnv, workerExecArgv, workerNeedsExtraCaCerts } from '../dist/jobs/scheduler.js'
import { isMain, loadavg, median, openStore, own, pct, procKb, report, round, sleep, tempDir } from './lib.js'

const newJob = (n, steps) => ({
  type: 'lyapunov', name: null, params: { n, steps, seed: 1 }, steps, priority: 0, timeoutMs: null, idempotencyKey: null, retryOf: null
})

/**
 * Preloaded into a worker only when asked: at exit, writes the CPU time the process used to a file. A CommonJS
 * file given with --require: with --import, Node would run even a CommonJS entry through its ES module loader,
 * which the real worker never starts.
 */
const USAGE_HOOK = `process.on('exit', () => {
  const u = process.resourceUsage()
  require('node:fs').writeFileSync(process.env.BENCH_USAGE_FILE, JSON.stringify({ cpuMs: (u.userCPUTime + u.systemCPUTime) / 1000, maxRssKb: u.maxRSS }))
})
`
let hookFile = ''

/** What a worker inherits from a server on SQLite with the built-in job types (the empty process gets the same). */
const WORKER_BASE_ENV = inheritedEnv(workerNeedsExtraCaCerts({ databaseUrl: undefined }, {}))

/** The worker the scheduler forks. */
const CHOSEN = chooseWorkerEntry()

/** Forks a worker exactly as scheduler.spawnWorker does (plus, with `usageFile`, the CPU-time hook). */
function spawnWorker (dbPath, token, { nice = 10, usageFile = null, entry = CHOSEN.entry, env = {} } = {}) {
  return own(fork(entry, [token], {
    env: {
      ...WORKER_BASE_ENV,
      ...workerCompileCacheEnv(),
      NONSTOP_DB_PATH: dbPath,
      NONSTOP_HEARTBEAT_MS: '1000',
      NONSTOP_CHECKPOINT_MS: '2000',
      NONSTOP_WORKER_NICE: String(nice),
      LOG_LEVEL: 'warn',
      LOG_FILE: '',
      ...env,
      ...(usageFile ? { BENCH_USAGE_FILE: usageFile } : {})
    },
    execArgv: usageFile ? [...workerExecArgv(), '--require', hookFile] : workerExecArgv(),
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

/** CPU ms of `count` whole tiny-job workers forked from `entry`, alternating with as many empty Node processes. */
async function cpuRuns (store, dbPath, dir, entries, count) {
  const out = Object.fromEntries(Object.keys(entries).map((k) => [k, []]))
  for (let i = 0; i < count; i++) {
    for (const [label, entry] of Object.entries(entries)) {
      const usageFile = join(dir, `usage-${label}-${i}.json`)
      let child
      if (entry === null) {
        child = own(fork(join(dir, 'empty.cjs'), [], { env: { ...WORKER_BASE_ENV, BENCH_USAGE_FILE: usageFile }, execArgv: ['--require', hookFile], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
      } else {
        store.submit(newJob(2, 1), 1e9)
        const token = randomBytes(8).toString('hex')
        child = spawnWorker(dbPath, token, { usageFile, entry })
        store.claimNext(token)
      }
      await exited(child)
      try { out[label].push(JSON.parse(readFileSync(usageFile, 'utf8')).cpuMs) } catch { /* hook did not run */ }
    }
  }
  return out
}

/** Peak RSS of a worker computing `steps` steps of size n on `threads` threads, watched for at most `ms`. */
async function rssRun (store, dbPath, n, steps, threads, ms) {
  const { row } = store.submit(newJob(n, steps), 1e9)
  const token = randomBytes(8).toString('hex')
  const child = spawnWorker(dbPath, token, { env: { NONSTOP_THREADS: String(threads) } })
  store.claimNext(token)
  let hwm = 0
  const until = Date.now() + ms
  while (child.exitCode === null && Date.now() < until) {
    // The process's own high-water mark covers its threads (one address space).
    const h = procKb(child.pid, 'VmHWM')
    if (h > hwm) hwm = h
    await sleep(100)
  }
  const seen = store.get(row.id)
  if (child.exitCode === null) child.kill('SIGKILL')
  await exited(child)
  return { n, threads, hwmMb: round(hwm / 1024, 0), step: seen.step, steps, status: seen.status, checkpointed: seen.step > 0 }
}

export async function run ({ reps = 8 } = {}) {
  const tmp = tempDir('boot')
  const dbPath = join(tmp.dir, 'boot.db')
  const { db, store } = await openStore(dbPath)
  const notes = [`Forked worker: ${CHOSEN.entry.replace(/.*\/dist\//, 'dist/')}${CHOSEN.bundled ? ' (the bundle)' : ` (plain module: ${CHOSEN.why})`}.`]
  hookFile = join(tmp.dir, 'usage-hook.cjs')
  writeFileSync(hookFile, USAGE_HOOK)
  writeFileSync(join(tmp.dir, 'empty.cjs'), 'process.channel?.unref()\n')
  try {
    // Node's own cost: fork → exit of an empty module, with the same ipc channel.
    const empty = join(tmp.dir, 'empty.mjs')
    writeFileSync(empty, 'process.channel?.unref()\n')
    const bare = []
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      await exited(own(fork(empty, [], { env: WORKER_BASE_ENV, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })))
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

    // CPU time a whole tiny-job worker uses (boot + claim + n = 2 + exit), next to an empty Node process and to
    // the plain (unbundled) worker module, interleaved so that all three see the same machine load.
    const cpuByEntry = await cpuRuns(store, dbPath, tmp.dir, { worker: CHOSEN.entry, plain: WORKER_ENTRY, node: null }, 7)
    const cpu = cpuByEntry.worker

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

    // Peak RSS of a worker computing n = 1000 (three steps, so at least one checkpoint is serialized and written)
    // and n = 2000 (watched until its first checkpoint), on 1 and on 2 compute threads.
    const rss = []
    for (const [n, steps, ms] of [[1000, 3, 60_000], [2000, 1, 45_000]]) {
      for (const threads of [1, 2]) rss.push(await rssRun(store, dbPath, n, steps, threads, ms))
    }
    for (const r of rss) notes.push(`RSS n=${r.n}, ${r.threads} thread(s): VmHWM ${r.hwmMb} MB; the job reached step ${r.step} of ${r.steps} (status ${r.status}) while watched.`)
    const rssOf = (n, threads) => rss.find((r) => r.n === n && r.threads === threads)
    const hwmMb = rssOf(1000, 1).hwmMb

    const bootP50 = median(toBeat)
    return {
      rows: [
        { metric: 'worker boot: fork → first heartbeat (pid set), median', target: '≤ 250 ms', measured: `${round(bootP50, 0)} ms (p90 ${round(pct(toBeat, 90), 0)}, n=${toBeat.length})`, pass: bootP50 <= 250 },
        { metric: 'same at niceness 0 (alternating runs), median', target: '—', measured: `${round(median(toBeatNice0), 0)} ms (p90 ${round(pct(toBeatNice0, 90), 0)})`, pass: null },
        { metric: 'worker start CPU: a whole tiny-job worker (boot + job + exit), median', target: '≤ 150 ms', measured: `${round(median(cpu), 0)} ms (empty Node process in the same run ${round(median(cpuByEntry.node), 0)} ms; load ${loadavg()})`, pass: median(cpu) <= 150 },
        { metric: 'same, plain worker module (no bundle), median', target: '—', measured: `${round(median(cpuByEntry.plain), 0)} ms`, pass: null },
        { metric: 'worker boot: fork → ready (DB opened, all imports done), median', target: '—', measured: `${round(median(toReady), 0)} ms (p90 ${round(pct(toReady, 90), 0)})`, pass: null },
        { metric: 'warm spare: claim → first heartbeat, median', target: '—', measured: `${round(median(pickup), 1)} ms (max ${round(Math.max(...pickup), 1)})`, pass: null },
        { metric: 'bare node fork → exit (empty module), median', target: '—', measured: `${round(median(bare), 0)} ms`, pass: null },
        { metric: 'worker peak RSS (VmHWM) computing n=1000, 1 thread', target: '≤ 250 MB', measured: `${hwmMb} MB`, pass: hwmMb <= 250 },
        { metric: 'worker peak RSS n=1000, 2 threads', target: 'report', measured: `${rssOf(1000, 2).hwmMb} MB`, pass: null },
        { metric: 'worker peak RSS n=2000, 1 thread / 2 threads (through the first checkpoint)', target: 'report', measured: `${rssOf(2000, 1).hwmMb} MB / ${rssOf(2000, 2).hwmMb} MB`, pass: null }
      ],
      samples: { toBeat, toBeatNice0, toReady, pickup, bare, cpu: cpuByEntry },
      rss,
      notes
    }
  } finally {
    db.close()
    tmp.remove()
  }
}

if (isMain(import.meta.url)) report('boot', await run())
