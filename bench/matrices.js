// Matrices: GF/s of a matmul job's product (src/job-types/chain.ts: 32-row blocks times columns, mathjs
// DenseMatrix 'number') against one stock `math.multiply` of the same two matrices, and upload / download
// throughput (MB/s of float64 data) for every format through the HTTP routes (app.inject, no socket).
//
//   npm run build && node bench/matrices.js                 n = 1000 product, 2000×2000 transfers
//   node bench/matrices.js --n=300 --io=500                 a small smoke run
//
// Each measurement runs in a fresh process (mathjs call sites turn polymorphic once several kernels ran in one
// process, which would slow whichever runs second). Results go to bench/results/matrices.json.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DIST, isMain, report, round } from './lib.js'

const arg = (name, fallback) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback)

/** A deterministic n×m matrix of numbers in (-1, 1). */
function randomMatrix (rows, cols, seed) {
  let s = seed >>> 0
  const data = new Float64Array(rows * cols)
  for (let k = 0; k < data.length; k++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    data[k] = s / 2 ** 31 - 1
  }
  return { rows, cols, data }
}

function cpuMs () {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

async function openStores () {
  const { migrate, openDb } = await import(join(DIST, 'db.js'))
  // The stores the server passes to buildApp (src/store/open.ts on SQLite).
  const { createSqliteMatrixStore } = await import(join(DIST, 'store/matrix-store.js'))
  const { createSqliteJobStore } = await import(join(DIST, 'store/sqlite.js'))
  // The synchronous store under it, for a job's inputs as the worker hands them out (src/jobs/matrix-inputs.ts).
  const { createMatrixStore } = await import(join(DIST, 'matrices/store.js'))
  const dir = mkdtempSync(join(tmpdir(), 'nonstop-bench-matrices-'))
  const db = openDb(join(dir, 'bench.db'))
  migrate(db)
  return { db, dir, matrices: createSqliteMatrixStore(db), syncMatrices: createMatrixStore(db), jobs: createSqliteJobStore(db) }
}

/** One measurement, in this (child) process. */
async function part (kind, n) {
  const { math, DenseMatrix } = await import(join(DIST, 'jobs/math.js'))
  if (kind === 'matmul') {
    const { ChainRun } = await import(join(DIST, 'job-types/chain.js'))
    const { matmulChain } = await import(join(DIST, 'job-types/matmul.js'))
    const { db, dir, syncMatrices: matrices } = await openStores()
    const ids = [matrices.insert({ ...randomMatrix(n, n, 1), name: 'a' }).id, matrices.insert({ ...randomMatrix(n, n, 2), name: 'b' }).id]
    const ctx = { math, loadMatrix: (id) => matrices.load(id), threads: () => 1, log: { info () {}, warn () {}, error () {} } }
    // Warm up mathjs's dispatch (built on first call) with the same call shape, as a worker's spare does.
    const w = [matrices.insert({ ...randomMatrix(40, 40, 5), name: 'w' }).id, matrices.insert({ ...randomMatrix(40, 40, 6), name: 'w' }).id]
    const warm = new ChainRun(matmulChain({ matrices: w }), undefined, ctx)
    while (!warm.finished) warm.advance()
    const run = new ChainRun(matmulChain({ matrices: ids }), undefined, ctx)
    const c0 = cpuMs()
    const t0 = performance.now()
    let units = 0
    while (!run.finished) { run.advance(); units++ }
    const wall = performance.now() - t0
    const cpu = cpuMs() - c0
    const result = run.result({ storeMatrix: () => 0 })
    db.close()
    rmSync(dir, { recursive: true, force: true })
    return { cpu: 2 * n ** 3 / cpu / 1e6, wall: 2 * n ** 3 / wall / 1e6, units, jobGflops: result.gflops }
  }
  if (kind === 'stock') {
    const dense = (m) => {
      const rows = Array.from({ length: m.rows }, (_, i) => Array.from(m.data.subarray(i * m.cols, (i + 1) * m.cols)))
      return new DenseMatrix({ data: rows, size: [m.rows, m.cols], datatype: 'number' })
    }
    math.multiply(dense(randomMatrix(40, 40, 5)), dense(randomMatrix(40, 40, 6)))
    const a = dense(randomMatrix(n, n, 1))
    const b = dense(randomMatrix(n, n, 2))
    const c0 = cpuMs()
    const t0 = performance.now()
    math.multiply(a, b)
    const wall = performance.now() - t0
    const cpu = cpuMs() - c0
    return { cpu: 2 * n ** 3 / cpu / 1e6, wall: 2 * n ** 3 / wall / 1e6 }
  }
  if (kind === 'io') {
    const { buildApp } = await import(join(DIST, 'http/app.js'))
    const { loadConfig } = await import(join(DIST, 'config.js'))
    const { FORMATS, MATRIX_FORMATS } = await import(join(DIST, 'matrices/formats/index.js'))
    const { db, dir, matrices, jobs } = await openStores()
    const config = loadConfig({ LOG_LEVEL: 'silent', MAX_MATRIX_BYTES: String(Math.max(64 * 2 ** 20, n * n * 8)) }, null)
    const app = await buildApp({ config, store: jobs, matrices, scheduler: { wake () {} } })
    const m = randomMatrix(n, n, 3)
    const dataMb = n * n * 8 / 1e6
    const out = {}
    for (const format of MATRIX_FORMATS) {
      const body = Buffer.concat([...FORMATS[format].write(m, '')].map((c) => typeof c === 'string' ? Buffer.from(c) : c))
      let t0 = performance.now()
      const up = await app.inject({ method: 'POST', url: `/api/matrices?format=${format}`, headers: { 'content-type': 'application/octet-stream' }, payload: body })
      const upMs = performance.now() - t0
      if (up.statusCode !== 201) throw new Error(`${format} upload: ${up.statusCode} ${up.body}`)
      t0 = performance.now()
      const down = await app.inject({ url: `/api/matrices/${up.json().id}/data?format=${format}` })
      const downMs = performance.now() - t0
      // The same file but for the name comment the mtx writer adds.
      if (down.statusCode !== 200 || Math.abs(down.rawPayload.length - body.length) > 300) throw new Error(`${format}: download of ${down.rawPayload.length} bytes, upload was ${body.length}`)
      out[format] = { fileMb: round(body.length / 1e6, 1), uploadMBs: round(dataMb / (upMs / 1000), 1), downloadMBs: round(dataMb / (downMs / 1000), 1), rssMb: round(process.memoryUsage().rss / 2 ** 20, 0) }
    }
    await app.close()
    db.close()
    rmSync(dir, { recursive: true, force: true })
    return out
  }
  throw new Error(`unknown part ${kind}`)
}

function inChild (kind, n) {
  const text = execFileSync(process.execPath, ['--max-semi-space-size=4', import.meta.filename ?? process.argv[1], `--part=${kind}`, `--n=${n}`], { encoding: 'utf8', maxBuffer: 1 << 20 })
  return JSON.parse(text.trim().split('\n').at(-1))
}

if (isMain(import.meta.url)) {
  const partArg = process.argv.find((a) => a.startsWith('--part='))?.split('=')[1]
  if (partArg) {
    console.log(JSON.stringify(await part(partArg, arg('n', 1000))))
  } else {
    const n = arg('n', 1000)
    const io = arg('io', 2000)
    // Three of each, interleaved, each in a fresh process: on a shared host one run of stock's strided loop can be
    // twice as fast as the next, so the ratio is taken between the medians.
    const jobs = []
    const stocks = []
    for (let i = 0; i < 3; i++) {
      jobs.push(inChild('matmul', n))
      stocks.push(inChild('stock', n))
      console.log(`matmul ${n}: ${round(jobs[i].cpu, 3)} GF/s by CPU, stock ${round(stocks[i].cpu, 3)}`)
    }
    const middle = (runs) => [...runs].sort((a, b) => a.cpu - b.cpu)[1]
    const job = middle(jobs)
    const stock = middle(stocks)
    const transfers = inChild('io', io)
    const ratio = round(job.cpu / stock.cpu, 2)
    const rows = [
      { metric: `matmul job product GF/s, two ${n}×${n} (row blocks × columns), by CPU time, median of 3`, target: '—', measured: `${round(job.cpu, 3)} (wall ${round(job.wall, 3)}; runs ${jobs.map((r) => round(r.cpu, 2)).join(', ')})`, pass: null },
      { metric: `matmul job product ÷ one stock math.multiply, dense number, n=${n}, medians`, target: '≥ 2.5×', measured: `${ratio}× (stock ${round(stock.cpu, 3)} GF/s; runs ${stocks.map((r) => round(r.cpu, 2)).join(', ')})`, pass: ratio >= 2.5 }
    ]
    for (const [format, f] of Object.entries(transfers)) {
      rows.push({ metric: `${io}×${io} ${format} (${f.fileMb} MB file): upload / download MB/s of float64 data`, target: 'report', measured: `${f.uploadMBs} / ${f.downloadMBs}`, pass: null })
    }
    report('matrices', {
      rows,
      notes: [
        'Transfers go through the HTTP routes with app.inject (no socket), wall clock, one process; MB/s counts the 8 bytes per number of the matrix, not the file.',
        'The matmul product is one ChainRun of the job type, warmed up on a 40×40 product first; stock is one math.multiply of the same two matrices as DenseMatrix \'number\'; three of each, interleaved, each in a fresh process, medians compared.'
      ]
    })
  }
}
