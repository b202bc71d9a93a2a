/**
 * The conformance kit, as an author runs it (`node dist/check-job-type.js`, what `npm run check-job-type` runs):
 * it passes every built-in type and the example, and fails a type that is not deterministic across processes and
 * one whose fraction goes back. Each run forks real processes that restore each other's checkpoints.
 */
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { migrate, openDb } from '../src/db.js'
import { BUILT_IN_TYPES } from '../src/job-types/builtins.js'
import { createMatrixStore } from '../src/matrices/store.js'
import { ROOT } from './fixtures/helpers.js'

/** Small params for each built-in type; a new built-in needs a line here (the test below insists). */
const BUILT_IN_PARAMS: Record<string, object> = {
  lyapunov: { n: 40, steps: 6, seed: 9 },
  // Matrices 1 and 2 of the database made below (the kit reads inputs from DB_PATH).
  matmul: { matrices: [1, 2, 1] },
  matpow: { matrix: 1, exponent: 1000 }
}

// Each check forks several processes that each boot mathjs: slow on a loaded machine, hence a longer file limit.
t.setTimeout(600_000)

function kit (...args: string[]): Promise<{ code: number, out: string }> {
  return kitIn({}, ...args)
}

function kitIn (env: Record<string, string>, ...args: string[]): Promise<{ code: number, out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'dist/check-job-type.js'), ...args], { cwd: ROOT, timeout: 180_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, out: stdout + stderr })
    })
  })
}

t.test('every built-in type conforms', async (t) => {
  t.same(Object.keys(BUILT_IN_PARAMS).sort(), [...BUILT_IN_TYPES].sort(), 'params chosen for each built-in')
  // Two stored 70×70 matrices with entries of modest size, so a power of them stays finite.
  const dbPath = join(t.testdir({}), 'matrices.db')
  const db = openDb(dbPath)
  migrate(db)
  const matrices = createMatrixStore(db)
  for (const seed of [1, 2]) {
    const data = Float64Array.from({ length: 70 * 70 }, (_, i) => (((i * 7919 + seed * 104729) % 1000) / 1000 - 0.5) / 20)
    matrices.insert({ name: `m${seed}`, rows: 70, cols: 70, data })
  }
  db.close()
  for (const name of BUILT_IN_TYPES) {
    const { code, out } = await kitIn({ DB_PATH: dbPath }, name, JSON.stringify(BUILT_IN_PARAMS[name]), '--cuts', '4')
    t.equal(code, 0, `${name}: exit 0\n${out}`)
    t.match(out, /ok {4}results bit-identical/, `${name}: bit-identical after restores in new processes`)
    t.match(out, /cut after units \d+(, \d+){3}, 5 processes/, `${name}: four cuts, five processes`)
    t.match(out, new RegExp(`PASS {2}${name} conforms`), `${name}: PASS`)
  }
})

t.test('the example type conforms', async (t) => {
  const { code, out } = await kit('examples/job-types/power-iteration.mjs', '{"n":80,"iterations":120,"seed":1}')
  t.equal(code, 0, `exit 0\n${out}`)
  t.match(out, /info {2}checkpoint sizes 648 B \.\. 648 B/, 'checkpoint size: n+1 float64')
  t.match(out, /PASS {2}power-iteration conforms/, 'PASS')
})

t.test('the complete example of the README conforms', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const example = /```js\n(\/\/ JOB_TYPES_DIR\/sum-of-squares\.mjs[\s\S]*?)```/.exec(readme)?.[1]
  t.ok(example, 'the README has the example')
  const file = join(t.testdir({}), 'sum-of-squares.mjs')
  writeFileSync(file, example ?? '')
  const { code, out } = await kit(file, '{"count":20500}')
  t.equal(code, 0, `exit 0\n${out}`)
  t.match(out, /result \{"sum":2871498211750\}/, 'the sum of squares below 20500')
})

t.test('a type whose result depends on the process fails, naming the first difference', async (t) => {
  const { code, out } = await kit('test/fixtures/job-types/nondeterministic.mjs', '{}')
  t.equal(code, 1, 'exit 1')
  t.match(out, /FAIL {2}results differ: result\.sum: \S+ ≠ \S+/, `first difference reported\n${out}`)
})

t.test('a type whose fraction goes back fails', async (t) => {
  const { code, out } = await kit('test/fixtures/job-types/fraction-back.mjs', '{}')
  t.equal(code, 1, 'exit 1')
  t.match(out, /FAIL {2}.*fraction went back from 0\.855 to 0\.5/, `the drop reported\n${out}`)
})

t.test('a type that cannot restore its checkpoint fails; bad usage and bad params exit non-zero', async (t) => {
  const restore = await kit('test/fixtures/job-types/restore-fails.mjs', '{"units":20,"unitMs":0}', '--cuts', '1')
  t.equal(restore.code, 1, 'restore failure: exit 1')
  t.match(restore.out, /FAIL {2}resuming from the checkpoint at unit \d+: Error: checkpoint format/, 'names the restore error')
  t.equal((await kit()).code, 2, 'no module: usage, exit 2')
  const bad = await kit('lyapunov', '{"n":"4","steps":1}')
  t.equal(bad.code, 1, 'invalid params: exit 1')
  t.match(bad.out, /params \/n must be integer/, 'names the field')
})
