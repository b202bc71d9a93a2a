// Submit → running and submit → first worker heartbeat against a real server, with and without the warm spare.
import { isMain, median, pct, report, round, sleep, startServer, submit, tempDir, waitJob } from './lib.js'

const FINAL = new Set(['done', 'failed', 'canceled'])

/** Workers the server has forked so far, from /metrics (NaN if the metric is not there). */
async function forks (url) {
  const text = await (await fetch(`${url}/metrics`)).text()
  const m = text.match(/^nonstop_worker_forks_total(?:\{[^}]*\})? (\d+)/m)
  return m ? Number(m[1]) : NaN
}

async function measure (warmSpare, jobs) {
  const tmp = tempDir(`submit-${warmSpare}`)
  const server = await startServer({ DB_PATH: `${tmp.dir}/s.db`, MAX_CONCURRENCY: '2', WARM_SPARE: String(warmSpare) })
  const toRunning = []
  const toBeat = []
  let idleForksPerS = NaN
  try {
    await sleep(1500) // let the spare boot
    for (let i = 0; i < jobs; i++) {
      const t0 = Date.now()
      const res = await submit(server.url, { n: 50, steps: 1, seed: i + 1 })
      if (res.status !== 201) throw new Error(`submit answered ${res.status}`)
      const job = await waitJob(server.url, res.body.id, (j) => FINAL.has(j.status), 20_000, 5)
      if (job.status !== 'done') throw new Error(`job ${job.id} ended ${job.status}: ${job.error}`)
      toRunning.push(Date.parse(job.startedAt) - t0)
      toBeat.push(Date.parse(job.heartbeatAt) - t0)
      await sleep(600)
    }
    // An idle server should not keep forking: count forks over 2 s with nothing to do.
    const f0 = await forks(server.url)
    await sleep(2000)
    idleForksPerS = ((await forks(server.url)) - f0) / 2
  } finally {
    await server.stop()
    tmp.remove()
  }
  return { toRunning, toBeat, idleForksPerS }
}

export async function run ({ jobs = 15 } = {}) {
  const warm = await measure(true, jobs)
  const cold = await measure(false, jobs)
  const fmt = (xs) => `p50 ${round(median(xs), 0)} ms, p95 ${round(pct(xs, 95), 0)} ms`
  const warmBeat = median(warm.toBeat)
  return {
    rows: [
      { metric: 'submit → running, WARM_SPARE=true', target: 'p50 ≤ 50 ms', measured: fmt(warm.toRunning), pass: median(warm.toRunning) <= 50 },
      { metric: 'submit → first worker heartbeat, WARM_SPARE=true', target: 'p50 ≤ 50 ms', measured: fmt(warm.toBeat), pass: warmBeat <= 50 },
      { metric: 'submit → running, WARM_SPARE=false', target: '—', measured: fmt(cold.toRunning), pass: null },
      { metric: 'submit → first worker heartbeat, WARM_SPARE=false', target: '—', measured: fmt(cold.toBeat), pass: null },
      { metric: 'idle server: workers forked per second, WARM_SPARE=true / false', target: '0 / 0', measured: `${round(warm.idleForksPerS, 1)} / ${round(cold.idleForksPerS, 1)}`, pass: warm.idleForksPerS === 0 && cold.idleForksPerS === 0 },
      { metric: 'heartbeat latency saved by the spare (p50)', target: '—', measured: `${round(median(cold.toBeat) - warmBeat, 0)} ms (${round(median(cold.toBeat) / Math.max(warmBeat, 1), 1)}×)`, pass: null }
    ],
    samples: { warm, cold },
    notes: [`${jobs} jobs per mode.`]
  }
}

if (isMain(import.meta.url)) report('submit', await run())
