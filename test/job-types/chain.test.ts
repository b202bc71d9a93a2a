import t from 'tap'
import { ChainRun } from '../../src/job-types/chain.js'
import matmul, { matmulChain } from '../../src/job-types/matmul.js'
import matpow, { matpowChain } from '../../src/job-types/matpow.js'
import type { Checkpoint, JobRun } from '../../src/jobs/contract.js'
import { type Matrix64, matrixSha256 } from '../../src/matrices/matrix.js'
import { matrixContext } from '../fixtures/jobctx.js'
import { intMatrix } from '../fixtures/matrices.js'

/** Plain triple loop: the exact product of small-integer matrices (every partial sum is an exact integer). */
function reference (a: Matrix64, b: Matrix64): Matrix64 {
  const out = new Float64Array(a.rows * b.cols)
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < b.cols; j++) {
      let s = 0
      for (let k = 0; k < a.cols; k++) s += a.data[i * a.cols + k] * b.data[k * b.cols + j]
      out[i * b.cols + j] = s
    }
  }
  return { rows: a.rows, cols: b.cols, data: out }
}

function runToEnd (run: JobRun): void {
  let last = -1
  while (!run.finished) {
    run.advance()
    if (run.fraction < last) throw new Error('progress went back')
    last = run.fraction
  }
}

/** Runs to the end, and at each of `stops` (advance counts) checkpoints and continues in a new run from it. */
function runWithStops (make: (from?: Checkpoint) => JobRun, stops: number[]): JobRun {
  let run = make()
  let n = 0
  for (;;) {
    if (run.finished) return run
    if (stops.includes(n)) {
      const saved = run.checkpoint()
      // Through a copy, as the database would give it back.
      run = make({ step: saved.step, state: Buffer.from(saved.state) })
    }
    run.advance()
    n++
  }
}

t.test('matmul of integer matrices equals the exact product, across panels and row blocks', async (t) => {
  const { ctx, out, put, matrices, loads } = matrixContext(t)
  const a = intMatrix(45, 70, 1)
  const b = intMatrix(70, 67, 2)
  const c = intMatrix(67, 5, 3)
  const ids = [put(a), put(b), put(c)]
  const expected = reference(reference(a, b), c)
  for (const unitFlops of [1e8, 2 * 70 * 32 * 7]) {
    const run = new ChainRun(matmulChain({ matrices: ids }), undefined, ctx, unitFlops)
    t.equal(run.steps, 2, 'two products')
    runToEnd(run)
    t.equal(run.fraction, 1, 'fraction 1 at the end')
    const result = run.result(out())
    t.match(result, { rows: 45, cols: 5, sha256: matrixSha256(expected.data) }, `unit ${unitFlops}: exact product`)
    const stored = matrices.load(result.matrix as number)
    t.same(Array.from(stored.data), Array.from(expected.data), 'the stored result matrix holds the product')
    t.equal(matrices.get(result.matrix as number)?.job_id !== null, true, 'owned by the job')
    let fro = 0
    for (const x of expected.data) fro += x * x
    t.ok(Math.abs((result.frobenius as number) - Math.sqrt(fro)) <= 1e-9 * Math.sqrt(fro), 'frobenius norm')
    t.ok((result.gflops as number) >= 0 && Number.isInteger(result.elapsedMs), 'timing fields')
  }
  t.same(loads.slice(0, 3), ids, 'matrices are loaded one at a time, in chain order')
})

t.test('matpow of a cyclic permutation to large exponents is the permutation to k mod n', async (t) => {
  const { ctx, out, put } = matrixContext(t)
  const n = 37
  const shift = (s: number): Matrix64 => {
    const data = new Float64Array(n * n)
    for (let i = 0; i < n; i++) data[i * n + ((i + s) % n)] = 1
    return { rows: n, cols: n, data }
  }
  const id = put(shift(1))
  for (const k of [1, 2, 36, 37, 1000003, 2 ** 31 - 1]) {
    const run = matpow.create({ matrix: id, exponent: k }, undefined, ctx) as JobRun
    t.equal(run.steps, matpow.steps?.({ matrix: id, exponent: k }), `k=${k}: steps() agrees with the run`)
    runToEnd(run)
    t.equal(run.result(out()).sha256, matrixSha256(shift(k % n).data), `k=${k}: P^k = shift by ${k % n}`)
  }
})

t.test('matpow of 90° rotations to large exponents is the rotation by k·90° mod 360°', async (t) => {
  const { ctx, out, put, matrices } = matrixContext(t)
  // 17 rotation blocks on the diagonal: 34×34, two panels.
  const rotation = (k: number): Matrix64 => {
    const [c, s] = [[1, 0], [0, 1], [-1, 0], [0, -1]][k % 4]
    const n = 34
    const data = new Float64Array(n * n)
    for (let b = 0; b < n; b += 2) {
      data[b * n + b] = c
      data[b * n + b + 1] = -s
      data[(b + 1) * n + b] = s
      data[(b + 1) * n + b + 1] = c
    }
    return { rows: n, cols: n, data }
  }
  const id = put(rotation(1))
  for (const k of [3, 4, 1e9 + 2, 2 ** 31 - 1]) {
    const run = new ChainRun(matpowChain({ matrix: id, exponent: k }), undefined, ctx, 2 * 34 * 32 * 5)
    runToEnd(run)
    const result = run.result(out())
    // Equal as numbers: sums such as 0·(−1) + (−1)·0 are −0 where the closed form has 0.
    const plus0 = (d: Float64Array): number[] => Array.from(d, (x) => x + 0)
    t.same(plus0(matrices.load(result.matrix as number).data), plus0(rotation(k % 4).data), `k=${k}: R^k = R^${k % 4}`)
  }
})

t.test('a run interrupted anywhere and resumed from its checkpoint gives the same bits', async (t) => {
  const { ctx, out, put } = matrixContext(t)
  // Non-integer entries, so any change of summation order would show in the bits.
  const rand = (rows: number, cols: number, seed: number): Matrix64 => {
    const m = intMatrix(rows, cols, seed, 1000)
    return { rows, cols, data: m.data.map((x) => x / 7.3) }
  }
  const ids = [put(rand(40, 50, 1)), put(rand(50, 70, 2)), put(rand(70, 33, 3))]
  const sq = put({ rows: 40, cols: 40, data: rand(40, 40, 4).data.map((x) => x / 300) })
  const unit = 2 * 50 * 32 * 9
  const cases: Array<[string, (from?: Checkpoint) => JobRun]> = [
    ['matmul', (from) => new ChainRun(matmulChain({ matrices: ids }), from, ctx, unit)],
    ['matpow', (from) => new ChainRun(matpowChain({ matrix: sq, exponent: 45 }), from, ctx, unit)]
  ]
  let seed = 12345
  const random = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed % n
  }
  for (const [name, make] of cases) {
    const whole = make()
    let units = 0
    while (!whole.finished) { whole.advance(); units++ }
    const expected = whole.result(out()).sha256
    for (let trial = 0; trial < 6; trial++) {
      const stops = [...new Set(Array.from({ length: 1 + random(4) }, () => random(units)))]
      const resumed = runWithStops(make, stops)
      t.equal(resumed.result(out()).sha256, expected, `${name}: stopped at units ${stops.join(', ')} of ${units}, same sha256`)
    }
    const atEnd = runWithStops(make, [units])
    t.ok(atEnd.finished, `${name}: a checkpoint after the last unit resumes finished`)
  }
})

t.test('a checkpoint that does not fit the job is refused, not misread', async (t) => {
  const { ctx, put } = matrixContext(t)
  const ids = [put(intMatrix(4, 4, 1)), put(intMatrix(4, 4, 2))]
  const run = new ChainRun(matmulChain({ matrices: ids }), undefined, ctx, 2 * 4 * 32)
  run.advance()
  const saved = run.checkpoint()
  t.throws(() => new ChainRun(matmulChain({ matrices: ids }), { step: 0, state: saved.state.subarray(0, saved.state.length - 8) }, ctx), /checkpoint does not fit/, 'short state')
  t.throws(() => new ChainRun(matmulChain({ matrices: ids }), { step: 0, state: new Uint8Array(5) }, ctx), /checkpoint does not fit/, 'garbage')
})

t.test('overflow to ±Infinity fails the run with a message naming the product', async (t) => {
  const { ctx, put } = matrixContext(t)
  const big = put({ rows: 2, cols: 2, data: new Float64Array([1e200, 0, 0, 1e200]) })
  const one = put({ rows: 2, cols: 2, data: new Float64Array([1, 0, 0, 1]) })
  const pow = matpow.create({ matrix: big, exponent: 3 }, undefined, ctx) as JobRun
  t.throws(() => runToEnd(pow), /matpow product 1 of 2 \(A\^2 = A\^1·A\^1\) overflowed: entry \(1, 1\) is Infinity; scale the matrices down/, 'matpow')
  const mul = matmul.create({ matrices: [one, big, big] }, undefined, ctx) as JobRun
  t.throws(() => runToEnd(mul), /matmul product 2 of 2 \(matrices\[0\.\.1\] × matrices\[2\], matrix \d+\) overflowed: entry \(1, 1\) is Infinity/, 'matmul')
})

t.test('submit checks: unknown ids and shapes that do not fit are named', async (t) => {
  const { matrices, put } = matrixContext(t)
  const submit = { matrix: (id: number) => matrices.shape(id) }
  const a = put(intMatrix(2, 3))
  const b = put(intMatrix(3, 4))
  const c = put(intMatrix(5, 2))
  t.equal(matmul.check?.({ matrices: [a, b] }, submit), undefined, 'fits')
  t.equal(matmul.check?.({ matrices: [a, 999] }, submit), 'matrices[1]: matrix 999 not found', 'unknown id')
  t.equal(matmul.check?.({ matrices: [a, b, c, a] }, submit), `matrices[1] (matrix ${b}, 3×4) and matrices[2] (matrix ${c}, 5×2) do not fit: 4 columns against 5 rows`, 'first pair that does not fit')
  t.equal(matpow.check?.({ matrix: a, exponent: 2 }, submit), `matrix ${a} is 2×3; a power needs a square matrix`, 'not square')
  t.equal(matpow.check?.({ matrix: 999, exponent: 2 }, submit), 'matrix 999 not found', 'unknown matrix')
  t.equal(matmul.steps?.({ matrices: [a, b, c] }), 2, 'matmul steps')
  t.equal(matpow.steps?.({ matrix: a, exponent: 2 ** 31 - 1 }), 60, 'matpow steps for 2^31-1: 30 squarings and 30 products')
  t.equal(matpow.steps?.({ matrix: a, exponent: 1 }), 1, 'k = 1 is one step (a copy)')
})

t.test('matpow k = 1 stores a copy of A', async (t) => {
  const { ctx, out, put } = matrixContext(t)
  const a = intMatrix(3, 3)
  const run = matpow.create({ matrix: put(a), exponent: 1 }, undefined, ctx) as JobRun
  t.ok(run.finished, 'nothing to compute')
  t.equal(run.result(out()).sha256, matrixSha256(a.data), 'A itself')
})

t.test('a mid-product checkpoint survives the job store\'s checkpoints table', async (t) => {
  const { ctx, out, put, db, jobs } = matrixContext(t)
  const ids = [put(intMatrix(40, 40, 1)), put(intMatrix(40, 40, 2))]
  const make = (from?: Checkpoint) => new ChainRun(matmulChain({ matrices: ids }), from, ctx, 2 * 40 * 32 * 10)
  const whole = make()
  while (!whole.finished) whole.advance()
  const expected = whole.result(out()).sha256
  const jobId = Number(db.prepare("INSERT INTO jobs (type, params, steps, status, lease, created_at, updated_at) VALUES ('matmul', '{}', 1, 'running', 1, 0, 0)").run().lastInsertRowid)
  db.prepare("UPDATE jobs SET worker = 'w1' WHERE id = ?").run(jobId)
  const run = make()
  run.advance()
  run.advance()
  // As the worker does: the state bound as a Buffer over the same bytes.
  const { step, state } = run.checkpoint()
  const saved = { step, state: Buffer.from(state.buffer, state.byteOffset, state.byteLength) }
  t.ok(jobs.saveCheckpoint({ id: jobId, lease: 1, worker: 'w1' }, saved, 10).ok, 'saved through the job store')
  const loaded = jobs.loadCheckpoint(jobId)
  t.ok(loaded, 'loaded back')
  const resumed = make(loaded as Checkpoint)
  while (!resumed.finished) resumed.advance()
  t.equal(resumed.result(out()).sha256, expected, 'same sha256 after the round trip through SQLite')
})
