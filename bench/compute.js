// Compute: GF/s of the job's product (M_k times C kept as column panels, `math.multiply(M, panel)` on mathjs
// DenseMatrix of datatype 'number', as src/jobs/lyapunov.ts does) next to stock `math.multiply` on nested
// arrays and on dense matrices, and a plain Float64Array i-k-j loop; then panel widths 8/16/32/64 at n = 1000.
//
// Every kernel runs in a process of its own. mathjs multiplies nested arrays and 'number' DenseMatrix objects
// in the same function with different scalar callbacks; once both have run in one process, V8's call sites
// in that loop are polymorphic and the 'number' path slows down several-fold. A worker only ever takes the
// 'number' path, so a fresh process per kernel is what the job sees.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { fillGaussian, LyapunovRun, PANEL_WIDTH } from '../dist/jobs/lyapunov.js'
import { math } from '../dist/jobs/math.js'
import { ProductKernel } from '../dist/jobs/threads/product.js'
import { isMain, loadavg, report, round } from './lib.js'

/** OpenBLAS dgemm on one core of this machine, measured separately (not by this script). */
export const OPENBLAS_GFLOPS_PER_CORE = 71

const SELF = fileURLToPath(import.meta.url)

const cpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/**
 * Runs `fn` (which does `flops` of work) until `minMs` have passed and at least `minReps` times. Returns GF/s
 * by wall clock and by CPU time of this process: on a shared machine the wall figure includes time spent
 * waiting for a core, the CPU-time figure does not.
 */
function timeIt (fn, flops, { minMs = 0, minReps = 1 } = {}) {
  let reps = 0
  const c0 = cpuMs()
  const t0 = performance.now()
  let t = t0
  while (reps < minReps || t - t0 < minMs) {
    fn()
    reps++
    t = performance.now()
  }
  const cpu = cpuMs() - c0
  return { wall: round((flops * reps) / (t - t0) / 1e6, 3), cpu: round((flops * reps) / cpu / 1e6, 3), reps }
}

/** timeIt for a function that returns a Promise (a run advancing on compute threads). */
async function timeItAsync (fn, flops, { minReps = 1 } = {}) {
  let reps = 0
  const c0 = cpuMs()
  const t0 = performance.now()
  while (reps < minReps) {
    await fn()
    reps++
  }
  const t = performance.now()
  const cpu = cpuMs() - c0
  return { wall: round((flops * reps) / (t - t0) / 1e6, 3), cpu: round((flops * reps) / cpu / 1e6, 3), reps }
}

function gaussianRows (n, k) {
  const flat = new Float64Array(n * n)
  fillGaussian(flat, 7, k)
  const rows = new Array(n)
  for (let i = 0; i < n; i++) rows[i] = Array.from(flat.subarray(i * n, (i + 1) * n))
  return { flat, rows }
}

function panelsOf (rows, cols, width) {
  const panels = []
  for (let p = 0; p < cols; p += width) panels.push(math.matrix(rows.map((r) => r.slice(p, p + width)), 'dense', 'number'))
  return panels
}

/** Rows [0, rowCount) of C = A·B on row-major Float64Arrays, i-k-j order so the inner loop is unit-stride. */
function ikj (a, b, c, n, rowCount) {
  for (let i = 0; i < rowCount; i++) {
    const ci = i * n
    for (let j = 0; j < n; j++) c[ci + j] = 0
    for (let k = 0; k < n; k++) {
      const aik = a[ci + k]
      const bk = k * n
      for (let j = 0; j < n; j++) c[ci + j] += aik * b[bk + j]
    }
  }
}

// Work per measurement. Large sizes run on a bounded slice that does the same per-panel or per-row work as a
// full product: `cols` columns of C for the panel product, `rows` rows of A for stock mathjs and the loop.
const SLICE = {
  250: { cols: 250, rows: 250, minMs: 1000, steps: 4 },
  500: { cols: 512, rows: 500, minMs: 1000, steps: 1 },
  1000: { cols: 1000, rows: 250, minMs: 0, steps: 3 },
  2000: { cols: 256, rows: 32, ikjRows: 200, minMs: 0, steps: 0 }
}

/** One kernel at one size, in this (fresh) process. */
async function measure (kernel, n, width = PANEL_WIDTH) {
  const s = SLICE[n]
  if (kernel === 'kernel') {
    // The job's own product (src/jobs/threads/product.ts) on one thread: groups of 32 columns of C' = M·C.
    const m = new Float64Array(n * n)
    const c = new Float64Array(n * n)
    fillGaussian(m, 7, 1)
    fillGaussian(c, 7, 2)
    const k = new ProductKernel({ n, m, c: [c, new Float64Array(n * n)] })
    const cols = Math.min(n, s.cols)
    k.group(1, 0, 0, Math.min(PANEL_WIDTH, n)) // warm-up
    return timeIt(() => {
      for (let p = 0; p < cols; p += PANEL_WIDTH) k.group(1, 0, p, Math.min(PANEL_WIDTH, cols - p))
    }, 2 * n * n * cols, { minMs: s.minMs })
  }
  if (kernel === 'step' || kernel === 'step2') {
    // A whole LyapunovRun step (draw M_k, product, norms, normalization) on 1 or 2 compute threads.
    const threads = kernel === 'step2' ? 2 : 1
    const run = new LyapunovRun({ n, steps: 1000, seed: 3 }, undefined, { threads: () => threads })
    await run.startThreads()
    while (run.step < 1) await run.advance() // warm-up step (and the pool's threads start)
    const r = await timeItAsync(async () => {
      const target = run.step + 1
      while (run.step < target) await run.advance()
    }, 2 * n ** 3, { minReps: s.steps })
    await run.close()
    return r
  }
  const a = gaussianRows(n, 1)
  const b = gaussianRows(n, 2)
  if (kernel === 'panel') {
    const m = math.matrix(a.rows, 'dense', 'number')
    const cols = Math.min(n, Math.ceil(s.cols / width) * width)
    const panels = panelsOf(b.rows, cols, width)
    const flops = panels.reduce((sum, p) => sum + 2 * n * n * p.size()[1], 0)
    // Warm up on the first panel, then time.
    math.multiply(m, panels[0])
    return timeIt(() => { for (const p of panels) math.multiply(m, p) }, flops, { minMs: s.minMs })
  }
  if (kernel === 'arrays' || kernel === 'dense') {
    const rows = a.rows.slice(0, s.rows)
    const lhs = kernel === 'arrays' ? rows : math.matrix(rows, 'dense', 'number')
    const rhs = kernel === 'arrays' ? b.rows : math.matrix(b.rows, 'dense', 'number')
    const small = kernel === 'arrays' ? rows.slice(0, 8) : math.matrix(rows.slice(0, 8), 'dense', 'number')
    math.multiply(small, rhs) // warm-up on 8 rows
    return timeIt(() => math.multiply(lhs, rhs), 2 * s.rows * n * n, { minMs: s.minMs })
  }
  if (kernel === 'ikj') {
    const rows = s.ikjRows ?? n
    const c = new Float64Array(n * n)
    ikj(a.flat, b.flat, c, n, 8) // warm-up
    return timeIt(() => ikj(a.flat, b.flat, c, n, rows), 2 * rows * n * n, { minMs: Math.max(s.minMs, 500) })
  }
  throw new Error(`unknown kernel ${kernel}`)
}

function inChild (kernel, n, width) {
  const res = spawnSync(process.execPath, [SELF, '--child', kernel, String(n), String(width ?? PANEL_WIDTH)], { encoding: 'utf8', timeout: 120_000 })
  if (res.status !== 0) throw new Error(`${kernel} n=${n} failed: ${res.stderr || res.signal}`)
  return JSON.parse(res.stdout.trim().split('\n').at(-1))
}

const show = (x) => (x ? `${x.cpu} (wall ${x.wall})` : '-')

/** Interleaved rounds of the job's product and of a whole step at n = 1000. */
const ROUNDS = 3

/** The run with the median GF/s by `by` (CPU time, or wall clock), its other figure with it. */
const medianRun = (runs, by = 'cpu') => [...runs].sort((a, b) => a[by] - b[by])[Math.floor(runs.length / 2)]

/** Sizes to measure: BENCH_COMPUTE_SIZES=1000 (comma-separated) for a quick run on a busy machine; n = 1000 is always in. */
const SIZES = process.env.BENCH_COMPUTE_SIZES ? [...new Set([1000, ...process.env.BENCH_COMPUTE_SIZES.split(',').map(Number)])].sort((a, b) => a - b) : [250, 500, 1000, 2000]
/** BENCH_COMPUTE_WIDTHS=0 skips the panel-width comparison. */
const WIDTHS = process.env.BENCH_COMPUTE_WIDTHS === '0' ? [] : [8, 16, 32, 64]

export async function run () {
  const table = []
  for (const n of SIZES) {
    const line = { n }
    line.load = loadavg().split(' ')[0]
    for (const kernel of ['kernel', 'step', 'step2', 'panel', 'arrays', 'dense', 'ikj']) {
      line[kernel] = kernel.startsWith('step') && SLICE[n].steps === 0 ? null : inChild(kernel, n)
    }
    if (n === 1000) {
      // The headline ratios (whole step ÷ its own product, 2 threads ÷ 1) from ROUNDS interleaved rounds of fresh
      // processes, the median of each: one run alone moves by ±15 % with the host's slower mode, and a 2-thread
      // run by wall clock with anything else that wakes on the 2 cores.
      line.rounds = { kernel: [line.kernel], step: [line.step], step2: [line.step2] }
      for (let r = 1; r < ROUNDS; r++) for (const kernel of ['kernel', 'step', 'step2']) line.rounds[kernel].push(inChild(kernel, n))
      line.kernel = medianRun(line.rounds.kernel)
      line.step = medianRun(line.rounds.step)
      line.step2 = medianRun(line.rounds.step2, 'wall')
      line.stepWall = medianRun(line.rounds.step, 'wall').wall
    }
    line.vsDense = round(line.kernel.cpu / line.dense.cpu, 2)
    line.vsArrays = round(line.kernel.cpu / line.arrays.cpu, 2)
    line.vsIkj = round(line.kernel.cpu / line.ikj.cpu, 2)
    if (line.step) {
      line.jobVsKernel = round(line.step.cpu / line.kernel.cpu, 2)
      line.jobVsDense = round(line.step.cpu / line.dense.cpu, 2)
      line.job2VsDense = round(line.step2.wall / line.dense.wall, 2)
      line.job2VsJob = round(line.step2.wall / (line.stepWall ?? line.step.wall), 2)
    }
    table.push(line)
    console.log(`n=${n} (load ${line.load}): job kernel ${show(line.kernel)} GF/s, whole step 1 thread ${show(line.step)}, 2 threads ${show(line.step2)}, previous panel product ${show(line.panel)}, stock arrays ${show(line.arrays)}, stock dense ${show(line.dense)}, i-k-j ${show(line.ikj)}`)
  }

  // Panel width at n = 1000 on the first 256 columns of C (the same work for every width), each width in its
  // own process, two interleaved rounds so that machine noise hits every width alike.
  const widths = WIDTHS
  const runs = Object.fromEntries(widths.map((w) => [w, []]))
  for (let round2 = 0; round2 < 2; round2++) for (const w of widths) runs[w].push(inChild('panel-width', 1000, w).cpu)
  const widthTable = widths.map((w) => ({ width: w, cpuGflops: Math.max(...runs[w]), runs: runs[w] }))
  const none = { width: PANEL_WIDTH, cpuGflops: NaN }
  const best = widthTable.reduce((x, y) => (y.cpuGflops > x.cpuGflops ? y : x), widthTable[0] ?? none)
  const current = widthTable.find((x) => x.width === PANEL_WIDTH) ?? none
  const spread = round((best.cpuGflops / current.cpuGflops - 1) * 100, 0)
  if (widths.length > 0) console.log('panel widths at n=1000 (best of 2, cpu GF/s):', widthTable.map((x) => `${x.width}: ${x.cpuGflops}`).join(', '))

  const at = table.find((x) => x.n === 1000)
  return {
    rows: [
      { metric: 'job product GF/s, n=1000 (mathjs matrix-vector on row blocks), 1 thread, by CPU time', target: '≥ 0.5', measured: `${at.kernel.cpu} (wall ${at.kernel.wall}; load ${at.load})`, pass: at.kernel.cpu >= 0.5 },
      { metric: 'whole job step GF/s (draw M_k + product + normalize), n=1000, 1 thread', target: '—', measured: `${at.step.cpu} (wall ${at.step.wall})`, pass: null },
      { metric: `whole job ÷ its own product, 1 thread, n=1000 (CPU; medians of ${ROUNDS} interleaved runs)`, target: '≥ 0.9', measured: `${at.jobVsKernel} (step ${at.rounds.step.map((x) => x.cpu).join(', ')}; product ${at.rounds.kernel.map((x) => x.cpu).join(', ')})`, pass: at.jobVsKernel >= 0.9 },
      { metric: 'whole job ÷ stock math.multiply (dense number), 1 thread, n=1000 (CPU)', target: '≥ 2.5', measured: `${at.jobVsDense}×`, pass: at.jobVsDense >= 2.5 },
      { metric: `whole job on 2 threads, n=1000 (wall GF/s, median of ${ROUNDS}; ÷ 1 thread; ÷ stock)`, target: '≥ 1.7× 1 thread, ≥ 4× stock', measured: `${at.step2.wall} (${at.job2VsJob}×; ${at.job2VsDense}× stock, by wall; runs ${at.rounds.step2.map((x) => x.wall).join(', ')})`, pass: at.job2VsJob >= 1.7 && at.job2VsDense >= 4 },
      { metric: 'previous layout: 32-column panel product GF/s, n=1000 (CPU)', target: '—', measured: `${at.panel.cpu} (job product is ${round(at.kernel.cpu / at.panel.cpu, 2)}× of it)`, pass: null },
      { metric: 'job product ÷ stock math.multiply, dense number, n=1000', target: 'report', measured: `${at.vsDense}×`, pass: null },
      { metric: 'job product ÷ stock math.multiply, nested arrays, n=1000', target: 'report', measured: `${at.vsArrays}×`, pass: null },
      { metric: 'plain Float64Array i-k-j GF/s, n=1000', target: '—', measured: `${at.ikj.cpu} (job product is ${at.vsIkj}× of it)`, pass: null },
      { metric: 'job product ÷ OpenBLAS on 1 core (71 GF/s, measured separately)', target: '—', measured: `${round((at.kernel.cpu / OPENBLAS_GFLOPS_PER_CORE) * 100, 2)} %`, pass: null },
      ...(widths.length > 0 ? [{ metric: 'best panel width at n=1000 (CPU GF/s, best of 2)', target: 'report', measured: `${best.width}: ${best.cpuGflops}; 32: ${current.cpuGflops} (${spread >= 0 ? '+' : ''}${spread} %)`, pass: null }] : [])
    ],
    table,
    widths: widthTable,
    notes: [
      'Bounded slices: at n = 1000 stock math.multiply runs on the first 250 rows of A; at n = 2000 the panel product runs on the first 256 of 2000 columns of C (8 panels), stock math.multiply on the first 32 rows of A times the full B (the same kernel and the same column walk over B; a full stock product at n = 2000 takes about three minutes) and the i-k-j loop on the first 200 rows. GF/s counts only the work done.',
      'Each figure comes from a fresh process: mathjs runs nested arrays and \'number\' DenseMatrix through one function with different scalar callbacks, and after both have run in one process the \'number\' path is several times slower (polymorphic call sites). Workers only take the \'number\' path.',
      ...(SIZES.length < 4 ? [`Sizes measured in this run: ${SIZES.join(', ')} (BENCH_COMPUTE_SIZES); panel widths ${widths.length > 0 ? 'compared' : 'not compared (BENCH_COMPUTE_WIDTHS=0)'}.`] : []),
      ...(widths.length > 0 ? [`A width is "clearly better" only beyond the run-to-run spread of the same width (see the runs column); ${Math.abs(spread) < 10 ? 'here all widths are within that spread, so 32 stays' : `here ${best.width} beats 32 by ${spread} %`}.`] : [])
    ]
  }
}

if (process.argv[2] === '--child') {
  const [, , , kernel, n, width] = process.argv
  if (kernel === 'panel-width') SLICE[1000].cols = 256
  const result = await measure(kernel === 'panel-width' ? 'panel' : kernel, Number(n), Number(width))
  process.stdout.write(`${JSON.stringify(result)}\n`)
} else if (isMain(import.meta.url)) {
  report('compute', await run())
}
