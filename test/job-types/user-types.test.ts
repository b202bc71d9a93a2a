/**
 * User job types end to end, with real processes: the built server (dist/server.js) started with a temporary
 * JOB_TYPES_DIR, its forked workers importing the user modules, one SQLite file. A user type runs to done, and
 * after a SIGKILL of its worker resumes from its checkpoint to the bit-identical answer; every way a type can
 * fail ends its job `failed` with the reason while the server keeps serving.
 */
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { openDb } from '../../src/db.js'
import { math } from '../../src/jobs/math.js'
import { api, ROOT, startServer, startsOf, waitFor } from '../fixtures/helpers.js'

const FAST = { HEARTBEAT_MS: '200', CHECKPOINT_MS: '300', LEASE_MS: '3000', STOP_GRACE_MS: '1500', MAX_CONCURRENCY: '2', MAX_ATTEMPTS: '3' }
const EXAMPLE = join(ROOT, 'examples/job-types/power-iteration.mjs')

/** A JOB_TYPES_DIR with the example, the fixtures, and one broken module; and the DB path beside it. */
function place (t: Test) {
  const dir = t.testdir({ types: {} })
  const types = join(dir, 'types')
  copyFileSync(EXAMPLE, join(types, 'power-iteration.mjs'))
  for (const f of ['advance-throws', 'restore-fails', 'never-returns', 'bigint-result', 'counter']) {
    copyFileSync(join(ROOT, 'test/fixtures/job-types', `${f}.mjs`), join(types, `${f}.mjs`))
  }
  writeFileSync(join(types, 'broken.mjs'), 'export default { name: "broken", title: ')
  return { ...FAST, JOB_TYPES_DIR: types, DB_PATH: join(dir, 'jobs.db') }
}

/** What an uninterrupted run of the example gives, in this process. */
async function reference (params: Record<string, unknown>) {
  const definition = (await import(EXAMPLE)).default
  const run = definition.create(params, undefined, { math })
  while (!run.finished) run.advance()
  return run.result()
}

async function job (url: string, id: number) {
  return (await api(url, `/api/jobs/${id}`)).body
}

async function ended (url: string, id: number, ms = 60_000) {
  return waitFor(async () => { const j = await job(url, id); return ['done', 'failed', 'canceled'].includes(j.status) && j }, ms, `job ${id} to end`)
}

t.test('a user type: listed, documented, runs to done, and resumes after SIGKILL to the bit-identical answer', async (t) => {
  const env = place(t)
  const server = await startServer(t, env)
  const types = (await api(server.url, '/api/job-types')).body.types as Array<Record<string, any>>
  t.match(types.find((x) => x.name === 'power-iteration'), { builtIn: false, title: /power iteration/, params: { properties: { iterations: { type: 'integer' } } } }, 'listed with its schema')
  t.match(types.find((x) => x.name === 'broken'), { error: /./ }, 'the broken module is listed with its error')
  const error = server.logs().find((l) => l.event === 'job-type-error')
  t.match(error, { level: 50, file: join(env.JOB_TYPES_DIR, 'broken.mjs') }, 'one error line names the broken file')
  const spec = (await api(server.url, '/docs/json')).body
  const variants = spec.paths['/api/jobs'].post.requestBody.content['application/json'].schema.oneOf
  t.ok(variants.some((v: any) => v.title === 'power-iteration' && v.properties.params.properties.n), '/docs shows its params')

  // Uninterrupted, through a real fork.
  const small = { n: 60, iterations: 200, seed: 3 }
  const { body: first } = await api(server.url, '/api/jobs', { body: { type: 'power-iteration', params: small } })
  const done = await ended(server.url, first.id)
  t.equal(done.status, 'done', `done (${done.error ?? ''})`)
  const ref = await reference(small)
  t.ok(Object.is(done.result.eigenvalue, ref.eigenvalue) && Object.is(done.result.residual, ref.residual), 'the answer of an in-process run, bit for bit')
  t.ok(Math.abs(done.result.eigenvalue - 4) < 0.5 && done.result.residual < 1e-3, `a sensible eigenvalue (${done.result.eigenvalue}) and residual (${done.result.residual})`)

  // Killed mid-run after a checkpoint: resumed by a new worker from that checkpoint.
  const params = { n: 200, iterations: 40_000, seed: 42 } // seconds of work, so that the kill comes before the end
  const { body: long } = await api(server.url, '/api/jobs', { body: { type: 'power-iteration', params } })
  t.equal(long.steps, 40_000, 'steps from the type')
  const db = openDb(env.DB_PATH)
  t.teardown(() => db.close())
  const saved = () => db.prepare('SELECT step FROM checkpoints WHERE job_id = ?').pluck().get(long.id) as number | undefined
  await waitFor(() => (saved() ?? 0) > 0, 60_000, 'a checkpoint')
  const running = await job(server.url, long.id)
  t.ok(running.step > 0 && running.step < 40_000, `progress reported in beats (step ${running.step})`)
  process.kill(running.pid, 'SIGKILL')
  const resumed = await ended(server.url, long.id, 120_000)
  t.equal(resumed.status, 'done', `done after the kill (${resumed.error ?? ''})`)
  t.equal(resumed.attempts, 2, 'a second attempt finished it')
  const { starts, givenBack } = startsOf(server.logs(), long.id)
  t.equal(starts.length, 2 + givenBack, `started twice (and ${givenBack} more times for attempts given back without a charge)`)
  t.ok((starts.at(-1)?.resumedFromStep as number) > 0, `the last attempt resumed from step ${starts.at(-1)?.resumedFromStep}`)
  const longRef = await reference(params)
  t.ok(Object.is(resumed.result.eigenvalue, longRef.eigenvalue) && Object.is(resumed.result.residual, longRef.residual), 'bit-identical to an uninterrupted run')
})

t.test('a type that fails: each way ends its job failed with the reason, and the server keeps working', async (t) => {
  const env = place(t)
  const server = await startServer(t, env)
  const submit = async (body: object) => (await api(server.url, '/api/jobs', { body })).body

  const throws = await submit({ type: 'advance-throws', params: {} })
  const bigint = await submit({ type: 'bigint-result', params: {} })
  const a = await ended(server.url, throws.id)
  t.match(a, { status: 'failed', error: 'division by zero at unit 3', attempts: 1 }, 'advance() throws: failed with its message, no retry')
  const stack = server.logs().find((l) => l.jobId === throws.id && l.event === 'failed')
  t.match((stack?.err as { stack?: string })?.stack, /advance-throws\.mjs/, 'the stack is in the log')
  t.match(await ended(server.url, bigint.id), { status: 'failed', error: /result\(\) failed: result is not JSON: result\.factorial is a BigInt/ }, 'result() not JSON: failed with the reason')

  const forever = await submit({ type: 'never-returns', params: {}, timeoutSeconds: 1 })
  t.match(await ended(server.url, forever.id, 30_000), { status: 'failed', error: 'timeout' }, 'advance() never returns: the timeout kills it')

  const restore = await submit({ type: 'restore-fails', params: {} })
  const db = openDb(env.DB_PATH)
  t.teardown(() => db.close())
  await waitFor(() => db.prepare('SELECT step FROM checkpoints WHERE job_id = ?').pluck().get(restore.id), 60_000, 'a checkpoint')
  process.kill((await job(server.url, restore.id)).pid, 'SIGKILL')
  const r = await ended(server.url, restore.id)
  t.match(r, { status: 'failed', error: /^cannot restore the checkpoint of step \d+: checkpoint format of step \d+ is not supported$/ }, 'restore fails: failed with the reason')
  t.equal(r.attempts, 2, 'after one attempt at restoring, not MAX_ATTEMPTS of them')

  const ok = await submit({ n: 20, steps: 3, seed: 1 })
  t.match(await ended(server.url, ok.id), { status: 'done' }, 'the built-in type still runs')
  const counter = await submit({ type: 'counter', params: { count: 10, unitMs: 0 } })
  t.match(await ended(server.url, counter.id), { status: 'done', result: { sum: 285, terms: 10 } }, 'another user type still runs')
})
