// Compute: GF/s of the job's product (M_k times C kept as column panels, `math.multiply(M, panel)` on mathjs
// DenseMatrix of datatype 'number', as src/jobs/lyapunov.ts does) next to stock `math.multiply` on nested
// arrays and on dense matrices, and a plain Float64Array i-k-j loop; then panel widths 8/16/32/64 at n = 1000.
import { fillGaussian, LyapunovRun, PANEL_WIDTH } from '../dist/jobs/lyapunov.js'
import { math } from '../dist/jobs/math.js'
import { isMain, report, round } from './lib.js'

/** OpenBLAS dgemm on one core of this machine, measured separately (not by this script). */
export const OPENBLAS_GFLOPS_PER_CORE = 71

const gf = (flops, ms) => flops / (ms / 1000) / 1e9

const cpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/**
 * Runs `fn` (which does `flops` of work) until `minMs` have passed, at least `minReps` times. Returns GF/s by
 * wall clock and by CPU time of this process: on a shared machine the wall figure includes time the
 * process spent waiting for a core, the CPU-time figure does not.
 */
function timeIt (fn, flops, { minMs = 1000, minReps = 1, maxReps = 1000 } = {}) {
  let reps = 0
  const c0 = cpuMs()
  const t0 = performance.now()
  let t = t0
  while (reps < maxReps && (reps < minReps || t - t0 < minMs)) {
    fn()
    reps++
    t = performance.now()
  }
  const cpu = cpuMs() - c0
  return { gflops: gf(flops * reps, t - t0), cpuGflops: gf(flops * reps, cpu), reps, ms: t - t0, busy: cpu / (t - t0) }
}

function gaussianRows (n, k) {
  const flat = new Float64Array(n * n)
  fillGaussian(flat, 7, k)
  const rows = new Array(n)
  for (let i = 0; i < n; i++) rows[i] = Array.from(flat.subarray(i * n, (i + 1) * n))
  return { flat, rows }
}

function panelsOf (rows, n, width) {
  const panels = []
  for (let p = 0; p < n; p += width) {
    const w = Math.min(width, n - p)
    panels.push(math.matrix(rows.map((r) => r.slice(p, p + w)), 'dense', 'number'))
  }
  return panels
}

/** C = A·B on row-major Float64Arrays, rows [0, rowCount) of C only; i-k-j order so the inner loop is unit-stride. */
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

const both = (r) => ({ wall: round(r.gflops, 3), cpu: round(r.cpuGflops, 3), busy: round(r.busy, 2) })
const show = (x) => (x ? `${x.wall} (cpu ${x.cpu})` : '-')

export async function run () {
  const table = []
  const notes = []
  // n = 2000 is bounded: the panel product over the first 8 of 63 panels, stock mathjs on the first 32 rows of
  // A (same kernel and the same full walk over B), the i-k-j loop on the first 200 rows. Each is a fixed
  // amount of identical per-panel or per-row work, so GF/s is the same quantity as for a full product.
  const plan = {
    250: { minMs: 1500, panels: null, stockRows: null, ikjRows: null, stepReps: 4 },
    500: { minMs: 1000, panels: null, stockRows: null, ikjRows: null, stepReps: 1 },
    1000: { minMs: 0, panels: null, stockRows: 250, ikjRows: null, stepReps: 1 },
    2000: { minMs: 0, panels: 8, stockRows: 32, ikjRows: 200, stepReps: 0 }
  }
  // Warm every kernel up on a small size first so the JIT is not what n = 250 measures.
  {
    const { flat, rows } = gaussianRows(120, 1)
    const m = math.matrix(rows, 'dense', 'number')
    const out = new Float64Array(120 * 120)
    for (let i = 0; i < 5; i++) {
      math.multiply(m, m)
      math.multiply(rows, rows)
      for (const p of panelsOf(rows, 120, 32)) math.multiply(m, p)
      ikj(flat, flat, out, 120, 120)
    }
  }
  for (const n of [250, 500, 1000, 2000]) {
    const cfg = plan[n]
    const { flat, rows } = gaussianRows(n, 1)
    const c0 = gaussianRows(n, 2)
    const m = math.matrix(rows, 'dense', 'number')
    const panels = panelsOf(c0.rows, n, PANEL_WIDTH)
    const usePanels = cfg.panels ?? panels.length
    const panelFlops = 2 * n * n * Math.min(n, usePanels * PANEL_WIDTH)
    const panel = timeIt(() => { for (let p = 0; p < usePanels; p++) math.multiply(m, panels[p]) }, panelFlops,
      { minMs: cfg.minMs, minReps: 1 })

    // The whole job step, as the worker drives it: RNG for M_k, every panel, normalization.
    let step = null
    if (cfg.stepReps > 0) {
      const runObj = new LyapunovRun({ n, steps: 1000, seed: 3 })
      step = timeIt(() => {
        const target = runObj.step + 1
        while (runObj.step < target) runObj.advance()
      }, 2 * n ** 3, { minMs: 0, minReps: cfg.stepReps, maxReps: cfg.stepReps })
    }

    const stockRows = cfg.stockRows ?? n
    const stockFlops = 2 * stockRows * n * n
    const aRows = stockRows === n ? rows : rows.slice(0, stockRows)
    const aDense = stockRows === n ? m : math.matrix(aRows, 'dense', 'number')
    const bRows = c0.rows
    const bDense = math.matrix(bRows, 'dense', 'number')
    const stockArrays = timeIt(() => math.multiply(aRows, bRows), stockFlops, { minMs: cfg.minMs })
    const stockDense = timeIt(() => math.multiply(aDense, bDense), stockFlops, { minMs: cfg.minMs })

    const ikjRows = cfg.ikjRows ?? n
    const cOut = new Float64Array(n * n)
    const loop = timeIt(() => ikj(flat, c0.flat, cOut, n, ikjRows), 2 * ikjRows * n * n, { minMs: Math.max(cfg.minMs, 500), minReps: 1 })

    const line = {
      n,
      panel: both(panel),
      step: step ? both(step) : null,
      stockArrays: both(stockArrays),
      stockDense: both(stockDense),
      ikj: both(loop),
      vsStockDense: round(panel.cpuGflops / stockDense.cpuGflops, 2),
      vsStockArrays: round(panel.cpuGflops / stockArrays.cpuGflops, 2),
      vsIkj: round(panel.cpuGflops / loop.cpuGflops, 2),
      slices: { panels: usePanels, of: panels.length, stockRows, ikjRows }
    }
    table.push(line)
    console.log(`n=${n}: panel ${show(line.panel)} GF/s, job step ${show(line.step)}, stock arrays ${show(line.stockArrays)}, stock dense ${show(line.stockDense)}, i-k-j ${show(line.ikj)}`)
  }
  notes.push('Bounded slices: at n = 1000 stock math.multiply runs on the first 250 rows of A; at n = 2000 the panel product runs on 8 of 63 panels, stock math.multiply on the first 32 rows of A times the full B (the same kernel and the same column walk over B; a full stock product at n = 2000 takes about three minutes), and the i-k-j loop on the first 200 rows.')

  // Panel width at n = 1000 on the first 256 columns of C (the same total work for every width: 32×8,
  // 16×16, 8×32, 4×64), interleaved three times so that machine noise hits every width alike.
  const widths = [8, 16, 32, 64]
  const n = 1000
  const cols = 256
  const { rows } = gaussianRows(n, 1)
  const m = math.matrix(rows, 'dense', 'number')
  const c0 = gaussianRows(n, 2).rows.map((r) => r.slice(0, cols))
  const byWidth = Object.fromEntries(widths.map((w) => [w, []]))
  const prepared = Object.fromEntries(widths.map((w) => [w, panelsOf(c0, cols, w)]))
  for (let rep = 0; rep < 3; rep++) {
    for (const w of widths) {
      const r = timeIt(() => { for (const p of prepared[w]) math.multiply(m, p) }, 2 * n * n * cols, { minMs: 0 })
      byWidth[w].push(r.cpuGflops)
    }
  }
  const widthTable = widths.map((w) => ({ width: w, cpuGflops: round(Math.max(...byWidth[w]), 3), runs: byWidth[w].map((x) => round(x, 3)) }))
  const best = widthTable.reduce((a, b) => (b.cpuGflops > a.cpuGflops ? b : a))
  const current = widthTable.find((x) => x.width === PANEL_WIDTH)
  console.log('panel widths at n=1000 (best of 3, cpu GF/s):', widthTable.map((x) => `${x.width}: ${x.cpuGflops}`).join(', '))

  const at1000 = table.find((x) => x.n === 1000)
  const rowsOut = [
    { metric: 'job product GF/s, n=1000 (32-col panels), CPU-time', target: '≥ 0.5', measured: `${at1000.panel.cpu} (wall ${at1000.panel.wall})`, pass: at1000.panel.cpu >= 0.5 },
    { metric: 'job step GF/s incl. RNG + normalize, n=1000', target: '—', measured: `${at1000.step.cpu} (wall ${at1000.step.wall})`, pass: null },
    { metric: 'ratio vs stock math.multiply (dense), n=1000', target: 'report', measured: `${at1000.vsStockDense}×`, pass: null },
    { metric: 'ratio vs stock math.multiply (arrays), n=1000', target: 'report', measured: `${at1000.vsStockArrays}×`, pass: null },
    { metric: 'plain Float64Array i-k-j GF/s, n=1000', target: '—', measured: `${at1000.ikj.cpu} (job product is ${at1000.vsIkj}× of it)`, pass: null },
    { metric: 'job product vs OpenBLAS 1 core (71 GF/s, measured separately)', target: '—', measured: `${round(at1000.panel.cpu / OPENBLAS_GFLOPS_PER_CORE * 100, 2)} %`, pass: null },
    { metric: 'best panel width at n=1000 (cpu GF/s, best of 3)', target: 'report', measured: `${best.width} (${best.cpuGflops}; 32 gives ${current.cpuGflops})`, pass: null }
  ]
  return { rows: rowsOut, table, widths: widthTable, notes }
}

if (isMain(import.meta.url)) report('compute', await run())
