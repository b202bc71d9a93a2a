/**
 * matmul and matpow end to end, with real processes: the built server, matrices uploaded over HTTP, jobs run by
 * forked workers that read their inputs from SQLite and store their result matrix in the transaction that ends
 * the job. Exact answers (integer products, permutation powers), and a worker SIGKILLed mid-product resumes to a
 * result with the same sha256 as an uninterrupted run.
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'
import { openDb } from '../../src/db.js'
import { api, startServer, startsOf, waitFor } from '../fixtures/helpers.js'

const FAST = { HEARTBEAT_MS: '200', CHECKPOINT_MS: '300', LEASE_MS: '3000', STOP_GRACE_MS: '1500', MAX_CONCURRENCY: '2', MAX_ATTEMPTS: '3' }

const csv = (m: number[][]): string => m.map((r) => r.join(',')).join('\n') + '\n'
const sha = (m: number[][]): string => {
  const bytes = Buffer.alloc(m.length * m[0].length * 8)
  m.flat().forEach((x, i) => bytes.writeDoubleLE(x, i * 8))
  return createHash('sha256').update(bytes).digest('hex')
}
const multiply = (a: number[][], b: number[][]): number[][] =>
  a.map((row) => b[0].map((_, j) => row.reduce((s, x, k) => s + x * b[k][j], 0)))

async function upload (url: string, name: string, m: number[][]): Promise<number> {
  const res = await fetch(`${url}/api/matrices?name=${name}`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: csv(m) })
  const body = await res.json() as { id: number }
  if (res.status !== 201) throw new Error(`upload ${name}: ${res.status} ${JSON.stringify(body)}`)
  return body.id
}

async function ended (url: string, id: number, ms = 120_000) {
  return waitFor(async () => {
    const j = (await api(url, `/api/jobs/${id}`)).body
    return ['done', 'failed', 'canceled'].includes(j.status) && j
  }, ms, `job ${id} to end`)
}

t.test('matmul of stored integer matrices: the exact product, stored as a matrix owned by the job', async (t) => {
  const dir = t.testdir({})
  const server = await startServer(t, { ...FAST, DB_PATH: join(dir, 'jobs.db') })
  // 70 columns: more than two 32-column panels, so the product crosses panel edges.
  const a = Array.from({ length: 45 }, (_, i) => Array.from({ length: 70 }, (_, j) => ((i * 7 + j * 3) % 11) - 5))
  const b = Array.from({ length: 70 }, (_, i) => Array.from({ length: 38 }, (_, j) => ((i * 5 + j * 2) % 13) - 6))
  const c = Array.from({ length: 38 }, (_, i) => Array.from({ length: 9 }, (_, j) => (i + 2 * j) % 4))
  const ids = [await upload(server.url, 'a', a), await upload(server.url, 'b', b), await upload(server.url, 'c', c)]

  const bad = await api(server.url, '/api/jobs', { body: { type: 'matmul', params: { matrices: [ids[0], ids[2]] } } })
  t.equal(bad.status, 400, 'shapes that do not fit are refused at submit')
  t.match(bad.body.message, /45×70|70.*38|shape|fit/i, `naming the pair (${bad.body.message})`)
  const unknown = await api(server.url, '/api/jobs', { body: { type: 'matmul', params: { matrices: [ids[0], 999999] } } })
  t.equal(unknown.status, 400, 'an unknown matrix id is refused at submit')

  const { status, body: job } = await api(server.url, '/api/jobs', { body: { type: 'matmul', params: { matrices: ids } } })
  t.equal(status, 201, 'submitted')
  const done = await ended(server.url, job.id)
  t.equal(done.status, 'done', `done (${done.error ?? ''})`)
  const exact = multiply(multiply(a, b), c)
  t.match(done.result, { rows: 45, cols: 9, sha256: sha(exact) }, 'the exact product, by its sha256')
  const meta = (await api(server.url, `/api/matrices/${done.result.matrix}`)).body
  t.match(meta, { rows: 45, cols: 9, sha256: sha(exact) }, 'stored as a matrix')
  const json = (await api(server.url, `/api/matrices/${done.result.matrix}/data?format=json`)).body
  t.same(json, exact, 'its download is the product')

  t.equal((await api(server.url, `/api/matrices/${ids[0]}`, { method: 'DELETE' })).status, 204, 'an input can be deleted once no job waits for it')
  t.equal((await api(server.url, `/api/jobs/${job.id}`, { method: 'DELETE' })).status, 204, 'the job deleted')
  t.equal((await api(server.url, `/api/matrices/${done.result.matrix}`)).status, 404, 'its result matrix went with it')
})

t.test('matpow and matmul of a permutation: the closed form, and the same sha256 after a worker is SIGKILLed mid-product', async (t) => {
  const dir = t.testdir({})
  const env = { ...FAST, DB_PATH: join(dir, 'jobs.db') }
  const server = await startServer(t, env)
  const n = 320
  const sigma = (i: number): number => (i * 17 + 5) % n // a permutation: 17 is prime to 320
  const p = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j === sigma(i) ? 1 : 0)))
  const id = await upload(server.url, 'p', p)
  const exponent = 2 ** 16 - 1
  // P^k sends row i to σ^k(i).
  const power = Array.from({ length: n }, (_, i) => {
    let j = i
    for (let k = 0; k < exponent; k++) j = sigma(j)
    return Array.from({ length: n }, (_, c) => (c === j ? 1 : 0))
  })

  const db = openDb(env.DB_PATH)
  t.teardown(() => db.close())
  /** Runs `params` twice, SIGKILLs the second run's worker once it has a checkpoint; returns both ends. */
  const wholeAndKilled = async (type: string, params: object) => {
    const submit = async () => (await api(server.url, '/api/jobs', { body: { type, params } })).body
    const whole = await submit()
    const killed = await submit()
    // A checkpoint, or the job's end: a job that ends (or fails) before its first checkpoint is reported as such,
    // with its log, rather than as a two-minute wait for a row that cannot come.
    await waitFor(async () => db.prepare('SELECT step FROM checkpoints WHERE job_id = ?').pluck().get(killed.id) !== undefined ||
      !['pending', 'running'].includes((await api(server.url, `/api/jobs/${killed.id}`)).body.status), 120_000, `a checkpoint of ${type}`, 100)
    const running = (await api(server.url, `/api/jobs/${killed.id}`)).body
    if (running.status !== 'running') {
      t.fail(`${type}: ended before its first checkpoint`, { job: running, log: server.logs().filter((l) => l.jobId === killed.id) })
      return running
    }
    t.equal(running.status, 'running', `${type}: still computing when killed`)
    process.kill(running.pid, 'SIGKILL')
    const [a, b] = [await ended(server.url, whole.id), await ended(server.url, killed.id)]
    t.equal(a.status, 'done', `${type} uninterrupted: done (${a.error ?? ''})`)
    t.equal(b.status, 'done', `${type} killed: done (${b.error ?? ''})`)
    t.equal(b.attempts, 2, `${type}: a second attempt finished it`)
    const { starts, givenBack } = startsOf(server.logs(), killed.id)
    t.equal(starts.length, b.attempts + givenBack, `${type}: started once per attempt (${givenBack} given back without one)`)
    t.ok(typeof starts.at(-1)?.resumedFromStep === 'number', `${type}: resumed from its checkpoint (step ${starts.at(-1)?.resumedFromStep})`)
    t.equal(b.result.sha256, a.result.sha256, `${type}: the resumed result has the same sha256`)
    return a
  }

  const a = await wholeAndKilled('matpow', { matrix: id, exponent })
  t.equal(a.result.sha256, sha(power), 'P^(2^16 - 1) is the permutation σ^(2^16 - 1)')

  // matmul of a chain of 24 copies: P^24, product after product.
  const chain = await wholeAndKilled('matmul', { matrices: Array.from({ length: 24 }, () => id) })
  const p24 = Array.from({ length: n }, (_, i) => {
    let j = i
    for (let k = 0; k < 24; k++) j = sigma(j)
    return Array.from({ length: n }, (_, c) => (c === j ? 1 : 0))
  })
  t.equal(chain.result.sha256, sha(p24), 'P·P·…·P (24 times) is the permutation σ^24')
})
