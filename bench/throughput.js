// Throughput: 2000 tiny jobs (n = 2, one step) submitted 50 at a time to a server with MAX_CONCURRENCY=2, then
// drained. Where the time goes is read back from the rows: claim, first heartbeat, finish, next claim.
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { openDb } from '../dist/db.js'
import { isMain, median, pct, report, round, sleep, startServer, submit, tempDir } from './lib.js'

const JOBS = 2000
const BATCH = 50
// How long to wait for the queue to drain: all 2000 take 3–5 min on 2 cores (one process per job). The first minute
// alone (BENCH_DRAIN_S=60) overstates the submits' share: they all arrive in its first ~8 s.
const DRAIN_LIMIT_MS = Number(process.env.BENCH_DRAIN_S || 420) * 1000

/** CPU ms of a process and of its reaped children (the workers), from /proc/<pid>/stat (10 ms ticks). */
function cpuOf (pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return { self: (Number(f[11]) + Number(f[12])) * 10, children: (Number(f[13]) + Number(f[14])) * 10 }
}

export async function run () {
  const tmp = tempDir('throughput')
  const dbPath = `${tmp.dir}/t.db`
  const server = await startServer({ DB_PATH: dbPath, MAX_CONCURRENCY: '2', WARM_SPARE: 'true' })
  const db = openDb(dbPath)
  const counts = db.prepare('SELECT status, count(*) AS c FROM jobs GROUP BY status')
  const codes = { accepted: 0, refused: 0, serverErrors: 0, other: 0 }
  try {
    await sleep(1500)
    const cpu0 = cpuOf(server.pid)
    const t0 = Date.now()
    for (let sent = 0; sent < JOBS; sent += BATCH) {
      const batch = []
      for (let i = 0; i < BATCH && sent + i < JOBS; i++) batch.push(submit(server.url, { n: 2, steps: 1, seed: sent + i }).catch(() => ({ status: 0 })))
      for (const res of await Promise.all(batch)) {
        if (res.status === 201) codes.accepted++
        else if (res.status === 429) codes.refused++
        else if (res.status >= 500) codes.serverErrors++
        else codes.other++
      }
    }
    const submitMs = Date.now() - t0

    let open = Infinity
    while (open > 0 && Date.now() - t0 < DRAIN_LIMIT_MS) {
      await sleep(250)
      open = 0
      for (const { status, c } of counts.all()) if (status === 'pending' || status === 'running') open += c
    }
    const cpu1 = cpuOf(server.pid)
    const byStatus = Object.fromEntries(counts.all().map((r) => [r.status, r.c]))
    const finished = db.prepare("SELECT id, created_at, started_at, heartbeat_at, finished_at FROM jobs WHERE status = 'done' ORDER BY finished_at").all()
    const done = finished.length
    const lastFinish = done > 0 ? finished[done - 1].finished_at : t0
    const drainRate = done / ((lastFinish - t0) / 1000)
    // Steady state only: skip the first 20 jobs (the submit burst is still arriving while they run).
    const steady = finished.slice(20)
    const steadyRate = steady.length > 1 ? (steady.length - 1) / ((steady.at(-1).finished_at - steady[0].finished_at) / 1000) : NaN

    // Per job: claim → first heartbeat (boot, or pick-up by a spare), first heartbeat → finish (job + result write).
    const claimToBeat = steady.map((j) => j.heartbeat_at - j.started_at)
    const beatToFinish = steady.map((j) => j.finished_at - j.heartbeat_at)
    const spare = claimToBeat.filter((x) => x < 30).length
    // Slot turnaround: a job finishes → the next claim of a pending job (the scheduler claims when a child exits).
    const claims = finished.map((j) => j.started_at).sort((a, b) => a - b)
    const gaps = []
    for (const j of steady) {
      const next = claims.find((c) => c >= j.finished_at)
      if (next !== undefined) gaps.push(next - j.finished_at)
    }
    const breakdown = {
      claimToFirstBeatP50: round(median(claimToBeat), 0),
      claimToFirstBeatP90: round(pct(claimToBeat, 90), 0),
      beatToFinishP50: round(median(beatToFinish), 0),
      finishToNextClaimP50: round(median(gaps), 0),
      finishToNextClaimP90: round(pct(gaps, 90), 0),
      claimsServedBySpare: `${spare} of ${steady.length}`
    }
    // CPU per finished job: the server's own, and its workers' (reaped children, so every worker that exited).
    const serverCpuPerJob = (cpu1.self - cpu0.self) / Math.max(done, 1)
    const workerCpuPerJob = (cpu1.children - cpu0.children) / Math.max(done, 1)
    const ceiling = (availableParallelism() * 1000) / (serverCpuPerJob + workerCpuPerJob)
    breakdown.serverCpuPerJobMs = round(serverCpuPerJob, 1)
    breakdown.workerCpuPerJobMs = round(workerCpuPerJob, 1)
    breakdown.cpuCeilingJobsPerS = round(ceiling, 1)
    const rows = [
      { metric: 'submits: accepted / refused (429) / 5xx / other', target: '5xx = 0', measured: `${codes.accepted} / ${codes.refused} / ${codes.serverErrors} / ${codes.other} in ${round(submitMs / 1000, 1)} s`, pass: codes.serverErrors === 0 },
      { metric: `drain rate, ${JOBS} tiny jobs, MAX_CONCURRENCY=2`, target: '≥ 10 jobs/s', measured: `${round(drainRate, 1)} jobs/s (steady state ${round(steadyRate, 1)}; ${done} done in ${round((lastFinish - t0) / 1000, 1)} s)`, pass: drainRate >= 10 },
      { metric: 'per job: claim → first heartbeat, p50 (p90)', target: '—', measured: `${breakdown.claimToFirstBeatP50} ms (${breakdown.claimToFirstBeatP90}); ${breakdown.claimsServedBySpare} claims went to a booted spare`, pass: null },
      { metric: 'per job: first heartbeat → done, p50', target: '—', measured: `${breakdown.beatToFinishP50} ms`, pass: null },
      { metric: 'per slot: job done → next claim, p50 (p90)', target: '—', measured: `${breakdown.finishToNextClaimP50} ms (${breakdown.finishToNextClaimP90})`, pass: null },
      { metric: 'CPU per job: worker process (fork to exit) / server', target: '—', measured: `${breakdown.workerCpuPerJobMs} ms / ${breakdown.serverCpuPerJobMs} ms (includes the submits)`, pass: null },
      { metric: 'CPU-bound ceiling with one process per job, all cores', target: '≥ 10 jobs/s', measured: `${breakdown.cpuCeilingJobsPerS} jobs/s`, pass: ceiling >= 10 }
    ]
    return {
      rows,
      breakdown,
      notes: [
        `Statuses at the end: ${JSON.stringify(byStatus)}${open > 0 ? ` — not drained within ${DRAIN_LIMIT_MS / 1000} s of the first submit; the rate is over the jobs that finished` : ''}.`
      ]
    }
  } finally {
    db.close()
    await server.stop()
    tmp.remove()
  }
}

if (isMain(import.meta.url)) report('throughput', await run())
