import t from 'tap'
import { digamma, fillGaussian, LyapunovRun, theoreticalExponent } from '../../src/jobs/lyapunov.js'

t.test('digamma matches known values', async (t) => {
  const EULER = 0.5772156649015329
  const cases: Array<[number, number]> = [
    [1, -EULER],
    [0.5, -EULER - 2 * Math.LN2],
    [2, 1 - EULER],
    [10, 2.251752589066721],
    [1000, 6.907255195648812]
  ]
  for (const [x, expected] of cases) t.ok(Math.abs(digamma(x) - expected) < 1e-12, `ψ(${x}) = ${expected} (got ${digamma(x)})`)
  // Independent identities: ψ(m) = −γ + H(m−1) and ψ(m + ½) = −γ − 2 ln 2 + Σ_{k≤m} 2/(2k−1).
  let harmonic = 0
  let odd = 0
  for (let m = 1; m <= 60; m++) {
    t.ok(Math.abs(digamma(m) - (-EULER + harmonic)) < 1e-12, `ψ(${m}) = −γ + H(${m - 1})`)
    harmonic += 1 / m
    odd += 2 / (2 * m - 1)
    t.ok(Math.abs(digamma(m + 0.5) - (-EULER - 2 * Math.LN2 + odd)) < 1e-12, `ψ(${m + 0.5}) by the half-integer identity`)
  }
  t.throws(() => digamma(0), RangeError, 'ψ is refused at 0')
})

t.test('the theoretical exponent for n = 1 is ½(ln 2 + ψ(½)) = ½ E[ln χ²₁]', async (t) => {
  t.ok(Math.abs(theoreticalExponent(1) - 0.5 * (Math.LN2 - 0.5772156649015329 - 2 * Math.LN2)) < 1e-12, 'n = 1')
  t.ok(theoreticalExponent(400) > theoreticalExponent(100), 'grows with n')
})

t.test('the Gaussian stream depends only on (seed, k) and looks standard normal', async (t) => {
  const a = new Float64Array(200_000)
  const b = new Float64Array(200_000)
  fillGaussian(a, 42, 7)
  fillGaussian(b, 42, 7)
  t.same(Buffer.from(a.buffer), Buffer.from(b.buffer), 'same (seed, k) gives the same numbers')
  fillGaussian(b, 42, 8)
  t.not(a[0], b[0], 'another k gives other numbers')
  fillGaussian(b, 43, 7)
  t.not(a[0], b[0], 'another seed gives other numbers')
  let mean = 0
  let sq = 0
  for (const x of a) { mean += x; sq += x * x }
  mean /= a.length
  const variance = sq / a.length - mean * mean
  t.ok(Math.abs(mean) < 0.01, `mean ≈ 0 (${mean})`)
  t.ok(Math.abs(variance - 1) < 0.01, `variance ≈ 1 (${variance})`)
})

function runToEnd (run: LyapunovRun): void {
  while (!run.finished) run.advance()
}

t.test('for n ≥ 64 the estimate agrees with theory to well under 1 %', async (t) => {
  for (const [n, steps, seed] of [[64, 300, 1], [100, 200, 2], [150, 100, 3]]) {
    const run = new LyapunovRun({ n, steps, seed })
    runToEnd(run)
    const { lyapunov, theory } = run.result()
    const rel = Math.abs(lyapunov - theory) / theory
    t.ok(rel < 0.005, `n=${n}, steps=${steps}: lyapunov ${lyapunov.toFixed(5)} vs theory ${theory.toFixed(5)} (${(rel * 100).toFixed(3)} %)`)
  }
})

t.test('same (n, steps, seed) gives identical lyapunov and trace, bit for bit', async (t) => {
  const one = new LyapunovRun({ n: 70, steps: 12, seed: 99 })
  const two = new LyapunovRun({ n: 70, steps: 12, seed: 99 })
  runToEnd(one)
  runToEnd(two)
  t.equal(Object.is(one.result().lyapunov, two.result().lyapunov), true, 'lyapunov identical')
  t.equal(Object.is(one.result().trace, two.result().trace), true, 'trace identical')
  const other = new LyapunovRun({ n: 70, steps: 12, seed: 100 })
  runToEnd(other)
  t.not(other.result().trace, one.result().trace, 'another seed gives another trace')
})

t.test('a run resumed from any checkpoint ends bit-identical to an uninterrupted one', async (t) => {
  const params = { n: 45, steps: 9, seed: 5 }
  const reference = new LyapunovRun(params)
  runToEnd(reference)
  for (const stopAt of [0, 1, 4, 8, 9]) {
    const first = new LyapunovRun(params)
    while (first.step < stopAt) first.advance()
    const saved = first.checkpoint()
    t.equal(saved.step, stopAt, `checkpoint at step ${stopAt}`)
    const resumed = new LyapunovRun(params, { step: saved.step, state: Buffer.from(saved.state) })
    runToEnd(resumed)
    t.ok(Object.is(resumed.result().lyapunov, reference.result().lyapunov), `resumed at ${stopAt}: same lyapunov`)
    t.ok(Object.is(resumed.result().trace, reference.result().trace), `resumed at ${stopAt}: same trace`)
  }
})

t.test('a run checkpointed mid-step (some panels of the product done) resumes bit-identical', async (t) => {
  const params = { n: 100, steps: 3, seed: 12 } // 4 panels of 32, 32, 32 and 4 columns
  const reference = new LyapunovRun(params)
  runToEnd(reference)
  for (const units of [1, 2, 3, 4, 5, 7, 10]) {
    const first = new LyapunovRun(params)
    for (let i = 0; i < units; i++) first.advance()
    const saved = first.checkpoint()
    const resumed = new LyapunovRun(params, { step: saved.step, state: Buffer.from(saved.state) })
    t.equal(resumed.fraction, first.fraction, `after ${units} units: same progress (${first.fraction.toFixed(3)})`)
    runToEnd(resumed)
    t.ok(Object.is(resumed.result().lyapunov, reference.result().lyapunov), `after ${units} units: same lyapunov`)
    t.ok(Object.is(resumed.result().trace, reference.result().trace), `after ${units} units: same trace`)
  }
})

t.test('progress moves within a step when n spans several panels', async (t) => {
  const run = new LyapunovRun({ n: 100, steps: 2, seed: 1 })
  run.advance()
  t.equal(run.step, 0, 'first panel does not finish the step')
  t.ok(run.fraction > 0 && run.fraction < 0.5, `fraction moved within step 1 (${run.fraction})`)
})

t.test('a checkpoint that does not fit the parameters is refused', async (t) => {
  const run = new LyapunovRun({ n: 10, steps: 3, seed: 1 })
  const cp = run.checkpoint()
  t.throws(() => new LyapunovRun({ n: 11, steps: 3, seed: 1 }, cp), /expected/, 'size mismatch')
  t.throws(() => new LyapunovRun({ n: 10, steps: 3, seed: 1 }, { step: 4, state: cp.state }), /outside/, 'step out of range')
})

t.test('results are bit-identical to the panel-by-panel implementation this layout replaced', async (t) => {
  // Recorded with the previous LyapunovRun (math.multiply(M_k, 32-column panel), math.norm, math.divide):
  // the column layout must not change a single bit of any result.
  const recorded: Array<[number, number, number, number, number]> = [
    [70, 12, 99, 2.126614157442543, -0.151264292991262],
    [100, 3, 12, 2.309084670044082, 0.08945376887348484],
    [45, 9, 5, 1.918438232201411, -0.061929513153471824],
    [300, 2, 7, 2.8476916319863657, -0.0035984553817611188],
    [1, 3, 4, -1.913701529811554, -1]
  ]
  for (const [n, steps, seed, lyapunov, trace] of recorded) {
    const run = new LyapunovRun({ n, steps, seed })
    runToEnd(run)
    t.ok(Object.is(run.result().lyapunov, lyapunov), `n=${n} steps=${steps} seed=${seed}: lyapunov ${run.result().lyapunov}`)
    t.ok(Object.is(run.result().trace, trace), `n=${n} steps=${steps} seed=${seed}: trace ${run.result().trace}`)
  }
})
