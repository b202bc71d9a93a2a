import t from 'tap'
import { LyapunovRun } from '../../src/jobs/lyapunov.js'

async function runToEnd (run: LyapunovRun): Promise<void> {
  while (!run.finished) await run.advance()
}

const bits = (run: LyapunovRun): string => {
  const r = run.result()
  return `${r.lyapunov}|${r.trace}`
}

t.test('1, 2 and 3 compute threads give the same bits, and the run reports the threads it used', async (t) => {
  const params = { n: 130, steps: 4, seed: 21 } // 5 column groups: 32, 32, 32, 32, 2 columns
  const reference = new LyapunovRun(params, undefined, { threads: () => 1 })
  await runToEnd(reference)
  t.equal(reference.result().threads, 1, 'one thread reported for a single-thread run')
  for (const threads of [2, 3]) {
    const run = new LyapunovRun(params, undefined, { threads: () => threads })
    try {
      await run.startThreads()
      await runToEnd(run)
      t.equal(bits(run), bits(reference), `${threads} threads: lyapunov and trace bit-identical`)
      t.equal(run.result().threads, threads, `${threads} threads reported as used`)
    } finally {
      await run.close()
    }
  }
})

t.test('a run checkpointed on 3 threads resumes on 1 or 2 (and back) with the same bits', async (t) => {
  const params = { n: 100, steps: 3, seed: 12 }
  const reference = new LyapunovRun(params, undefined, { threads: () => 1 })
  await runToEnd(reference)
  for (const [before, after, units] of [[3, 1, 1], [2, 3, 5]]) {
    const first = new LyapunovRun(params, undefined, { threads: () => before })
    await first.startThreads()
    for (let i = 0; i < units; i++) await first.advance()
    const saved = first.checkpoint()
    await first.close()
    const resumed = new LyapunovRun(params, { step: saved.step, state: Buffer.from(saved.state) }, { threads: () => after })
    try {
      await resumed.startThreads()
      t.equal(resumed.fraction, first.fraction, `${before} → ${after} threads after ${units} units: same progress`)
      await runToEnd(resumed)
      t.equal(bits(resumed), bits(reference), `${before} → ${after} threads after ${units} units: same bits`)
    } finally {
      await resumed.close()
    }
  }
})

t.test('the share may change between units without changing the bits', async (t) => {
  const params = { n: 300, steps: 2, seed: 3 } // 10 groups a step: 3 + 1 + 2 + 4, then 1 + 3 + 1 + 2 + 3
  const reference = new LyapunovRun(params)
  await runToEnd(reference)
  let unit = 0
  const run = new LyapunovRun(params, undefined, { threads: () => [3, 1, 2, 4, 1][unit++ % 5] })
  try {
    await run.startThreads(4)
    await runToEnd(run)
    t.equal(bits(run), bits(reference), 'threads 3, 1, 2, 4, 1, … per unit: same bits')
    t.equal(run.result().threads, 4, 'the most threads one unit used is reported')
  } finally {
    await run.close()
  }
})

t.test('close() ends the compute threads', async (t) => {
  const run = new LyapunovRun({ n: 64, steps: 5, seed: 1 }, undefined, { threads: () => 2 })
  await run.startThreads()
  await run.advance()
  const pool = (run as unknown as { pool: { threads: Array<{ worker: { threadId: number } }> } }).pool
  t.equal(pool.threads.length, 1, 'one pool thread besides the run\'s own')
  const worker = pool.threads[0].worker as unknown as import('node:worker_threads').Worker
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve))
  await run.close()
  t.equal(typeof await exited, 'number', 'the pool thread exited')
})

t.test('thread shares: a lone job gets every core, several share them, never more threads than cores', async (t) => {
  const { threadShare } = await import('../../src/jobs/cores.js')
  t.equal(threadShare(7, [7], 2), 2, 'a lone job on 2 cores: 2 threads')
  t.equal(threadShare(7, [], 8), 8, 'a job that is not yet listed counts itself')
  t.same([3, 5].map((id) => threadShare(id, [5, 3], 2)), [1, 1], 'two jobs on 2 cores: 1 each')
  t.same([1, 2, 3].map((id) => threadShare(id, [1, 2, 3], 8)), [3, 3, 2], 'three jobs on 8 cores: 3, 3, 2 (the oldest first)')
  t.same([1, 2, 3].map((id) => threadShare(id, [1, 2, 3], 2)), [1, 1, 1], 'more jobs than cores: one thread each')
  for (const cores of [1, 2, 3, 4, 8, 16]) {
    for (let jobs = 1; jobs <= cores + 1; jobs++) {
      const ids = Array.from({ length: jobs }, (_, i) => 10 + i)
      const total = ids.reduce((sum, id) => sum + threadShare(id, ids, cores), 0)
      t.ok(total <= cores + 1 && total >= Math.min(cores, jobs), `${jobs} jobs on ${cores} cores: ${total} threads in all`)
    }
  }
})

t.test('a compute thread that dies mid-unit loses nothing: its part is computed on the run\'s own thread, same bits', async (t) => {
  const params = { n: 600, steps: 2, seed: 8 } // 19 groups a step, each long enough that an ended thread cannot answer first
  const reference = new LyapunovRun(params, undefined, { threads: () => 1 })
  await runToEnd(reference)
  const lost: Error[] = []
  const run = new LyapunovRun(params, undefined, { threads: () => 3, onThreadLost: (err) => lost.push(err) })
  type Pool = { threads: Array<{ worker: import('node:worker_threads').Worker }>, lost: number, exhausted: boolean, size: number }
  const pool = (): Pool => (run as unknown as { pool: Pool }).pool
  try {
    await run.startThreads()
    await run.advance()
    // Terminated, not awaited: the next unit's work is posted to a thread that is ending and will never answer.
    pool().threads[0].worker.terminate().catch(() => {})
    await run.advance()
    t.equal(lost.length, 1, 'the part it held was computed here instead')
    t.match(lost[0].message, /compute thread \d+ ended/, `and said so (${lost[0].message})`)
    t.equal(pool().lost, 1, 'the pool counts it')
    // Two more deaths, between units this time (the dead thread is dropped and replaced at the next unit); after
    // the third the run starts no more threads and computes alone.
    for (let i = 0; i < 2; i++) {
      await run.startThreads()
      const worker = pool().threads[0].worker
      const gone = new Promise((resolve) => worker.once('exit', resolve))
      worker.terminate().catch(() => {})
      await gone
      await run.advance()
    }
    t.equal(pool().lost, 3, `three threads lost (${pool().lost}, ${lost.length} parts recomputed)`)
    t.ok(pool().exhausted, 'the pool gives up on threads')
    await run.startThreads() // returns at once: no thread will come
    await runToEnd(run)
    t.equal(pool().size, 1, 'one survivor is left, none replaced')
    t.equal(bits(run), bits(reference), 'lyapunov and trace bit-identical to a run on one thread')
  } finally {
    await run.close()
  }
})

t.test('closing a pool with work outstanding is not a thread death: nothing is recomputed, nothing is reported', async (t) => {
  const { ThreadPool } = await import('../../src/jobs/threads/pool.js')
  const lost: Error[] = []
  // A group of a 1500×1500 product keeps the thread busy for a while: it cannot answer before it is ended.
  const n = 1500
  const sab = () => new SharedArrayBuffer(n * n * 8)
  const pool = new ThreadPool({ kind: 'init', n, m: sab(), c0: sab(), c1: sab() }, (err) => lost.push(err))
  pool.resize(1)
  while (pool.ready() < 1) await new Promise((resolve) => setTimeout(resolve, 5))
  let local = 0
  const pending = pool.callOr(0, { kind: 'group', k: 1, src: 0, col0: 0, width: 32 }, () => ++local)
  await pool.close()
  await t.rejects(pending, /compute thread \d+ ended/, 'the outstanding part rejects')
  t.equal(local, 0, 'it is not computed again here')
  t.equal(lost.length, 0, 'and no thread death is reported')
})
