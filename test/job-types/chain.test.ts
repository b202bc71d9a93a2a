import t from 'tap'
import { ChainRun, type ChainSpec } from '../../src/job-types/chain.js'
import matmul, { matmulChain } from '../../src/job-types/matmul.js'
import matpow, { matpowChain } from '../../src/job-types/matpow.js'
import type { Checkpoint, JobRun } from '../../src/jobs/contract.js'
import { math } from '../../src/jobs/math.js'
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

/** Entries of every sign and many magnitudes, none of them integers: rounding makes every sum's order show in its bits. */
function realMatrix (rows: number, cols: number, seed: number): Matrix64 {
  let s = seed >>> 0
  const rand = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
  const data = new Float64Array(rows * cols)
  for (let k = 0; k < data.length; k++) data[k] = (rand() - 0.5) * 2 ** Math.floor(rand() * 12 - 6)
  return { rows, cols, data }
}

/** The chain computed by one stock `math.multiply` per product, on whole 'number' DenseMatrix operands. */
function stockChain (spec: ChainSpec, load: (id: number) => Matrix64): Float64Array {
  const dense = (m: Matrix64) => math.matrix(Array.from({ length: m.rows }, (_, i) => Array.from(m.data.subarray(i * m.cols, (i + 1) * m.cols))), 'dense', 'number')
  let p = dense(load(spec.first))
  for (const product of spec.products) p = math.multiply(p, product.right === 'self' ? p : dense(load(product.right))) as typeof p
  return Float64Array.from((p.valueOf() as number[][]).flat())
}

t.test('matmul and matpow give the bits of stock math.multiply, however the work is cut into units', async (t) => {
  const { ctx, out, put, matrices } = matrixContext(t)
  const a = realMatrix(70, 45, 11)
  const b = realMatrix(45, 33, 12)
  const c = realMatrix(33, 70, 13)
  const sq = realMatrix(67, 67, 14)
  const specs: Array<[string, ChainSpec]> = [
    ['matmul', matmulChain({ matrices: [put(a), put(b), put(c)] })],
    ['matpow', matpowChain({ matrix: put(sq), exponent: 11 })]
  ]
  for (const [name, spec] of specs) {
    const expected = matrixSha256(stockChain(spec, (id) => matrices.load(id)))
    // 1e8: one unit per panel; the others cut a panel's rows into units of 7, 3 and 1 rows (not whole mathjs blocks).
    for (const unitFlops of [1e8, 2 * 70 * 32 * 7, 2 * 70 * 32 * 3, 1]) {
      const run = new ChainRun(spec, undefined, ctx, unitFlops)
      runToEnd(run)
      t.equal(run.result(out()).sha256, expected, `${name}, unit ${unitFlops}: the stock product's bits`)
    }
  }
})

t.test('1, 2 and 3 compute threads, and a resume on another count, give the stock bits; the run reports its threads', async (t) => {
  const { ctx, out, put, matrices } = matrixContext(t)
  const a = realMatrix(130, 70, 21)
  const b = realMatrix(70, 97, 22)
  const c = realMatrix(97, 40, 23)
  const sq = realMatrix(100, 100, 24)
  const specs: Array<[string, ChainSpec]> = [
    ['matmul', matmulChain({ matrices: [put(a), put(b), put(c)] })],
    ['matpow', matpowChain({ matrix: put(sq), exponent: 6 })]
  ]
  const withThreads = (threads: () => number) => ({ ...ctx, threads })
  async function finish (run: ChainRun): Promise<void> {
    while (!run.finished) await run.advance()
  }
  for (const [name, spec] of specs) {
    const expected = matrixSha256(stockChain(spec, (id) => matrices.load(id)))
    // 2·70·32·40 flops a unit: a panel's 100 or 130 rows come in units of 40 rows, shared by the threads.
    const unitFlops = 2 * 100 * 32 * 40
    for (const threads of [1, 2, 3]) {
      const run = new ChainRun(spec, undefined, withThreads(() => threads), unitFlops)
      try {
        await run.startThreads()
        await finish(run)
        const result = run.result(out())
        t.equal(result.sha256, expected, `${name} on ${threads} threads: the stock bits`)
        t.equal(result.threads, threads, `${name}: ${threads} threads reported as used`)
      } finally {
        await run.close()
      }
    }
    let unit = 0
    const varying = new ChainRun(spec, undefined, withThreads(() => [3, 1, 2][unit++ % 3]), unitFlops)
    try {
      await varying.startThreads(3)
      await finish(varying)
      t.equal(varying.result(out()).sha256, expected, `${name}: 3, 1, 2, … threads per unit, the same bits`)
    } finally {
      await varying.close()
    }
    for (const [before, after, units] of [[3, 1, 4], [1, 2, 7]]) {
      const first = new ChainRun(spec, undefined, withThreads(() => before), unitFlops)
      await first.startThreads()
      for (let i = 0; i < units; i++) await first.advance()
      const saved = first.checkpoint()
      await first.close()
      const resumed = new ChainRun(spec, { step: saved.step, state: Buffer.from(saved.state) }, withThreads(() => after), unitFlops)
      try {
        await resumed.startThreads()
        await finish(resumed)
        t.equal(resumed.result(out()).sha256, expected, `${name}: ${units} units on ${before} threads, resumed on ${after}: the same bits`)
      } finally {
        await resumed.close()
      }
    }
  }
})

t.test('close() ends a chain run\'s compute threads, and overflow is reported at the same entry on any count', async (t) => {
  const { ctx, put } = matrixContext(t)
  const a = put(realMatrix(80, 80, 31))
  const run = new ChainRun(matpowChain({ matrix: a, exponent: 4 }), undefined, { ...ctx, threads: () => 2 })
  await run.startThreads()
  await run.advance()
  const pool = (run as unknown as { pool: { threads: Array<{ worker: import('node:worker_threads').Worker }> } }).pool
  t.equal(pool.threads.length, 1, 'one pool thread besides the run\'s own')
  const exited = new Promise<number>((resolve) => pool.threads[0].worker.once('exit', resolve))
  await run.close()
  t.equal(typeof await exited, 'number', 'the pool thread exited')

  // Row 70, column 3 overflows: computed by the second thread's rows when there are two.
  const big = realMatrix(80, 80, 32)
  big.data[69 * 80 + 5] = 1e300
  const b = put(big)
  const c = put({ rows: 80, cols: 80, data: new Float64Array(80 * 80).map((_, k) => k % 81 === 0 ? 1 : 0).map((x, k) => k === 5 * 80 + 2 ? 1e300 : x) })
  for (const threads of [1, 2, 3]) {
    const mul = new ChainRun(matmulChain({ matrices: [b, c] }), undefined, { ...ctx, threads: () => threads })
    try {
      await mul.startThreads()
      let error: unknown
      try {
        while (!mul.finished) await mul.advance()
      } catch (err) { error = err }
      t.match(String(error), /matmul product 1 of 1 .* overflowed: entry \(70, 3\) is Infinity/, `${threads} threads: the first overflowing entry is named`)
    } finally {
      await mul.close()
    }
  }
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

t.test('a compute thread that dies mid-unit: its rows are computed on the run\'s own thread, the stock bits, and the log says so', async (t) => {
  const { ctx, out, put, matrices } = matrixContext(t)
  const spec = matmulChain({ matrices: [put(realMatrix(130, 70, 31)), put(realMatrix(70, 97, 32))] })
  const expected = matrixSha256(stockChain(spec, (id) => matrices.load(id)))
  const warnings: object[] = []
  const log = { info () {}, error () {}, warn (obj: object) { warnings.push(obj) } }
  const run = new ChainRun(spec, undefined, { ...ctx, log, threads: () => 3 }, 2 * 70 * 32 * 60)
  const pool = () => (run as unknown as { pool: { threads: Array<{ worker: import('node:worker_threads').Worker }>, lost: number } }).pool
  try {
    await run.startThreads()
    await run.advance()
    pool().threads[1].worker.terminate().catch(() => {}) // the next unit's rows are posted to a thread that will never answer
    await run.advance()
    t.equal(pool().lost, 1, 'one thread lost')
    t.match(warnings, [{ event: 'compute-thread-lost' }], 'one warning in the job\'s log')
    while (!run.finished) await run.advance()
    t.equal(run.result(out()).sha256, expected, 'the stock bits all the same')
  } finally {
    await run.close()
  }
})
