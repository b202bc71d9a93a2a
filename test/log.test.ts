import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createLogger } from '../src/log.js'
import { api, startServer, waitFor } from './fixtures/helpers.js'

t.test('createLogger appends JSON lines to LOG_FILE, with its bindings and an ISO time', async (t) => {
  const logFile = join(t.testdir({}), 'nested', 'app.log')
  const a = createLogger({ logLevel: 'info', logFile })
  const b = createLogger({ logLevel: 'info', logFile }, { worker: 'w1' })
  a.info({ jobId: 1, event: 'submitted' }, 'one')
  b.info({ jobId: 1, event: 'started' }, 'two')
  a.debug('below the level')
  const lines = readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
  t.equal(lines.length, 2, 'two lines, the debug one dropped; the folder was created')
  t.match(lines[0], { level: 30, pid: process.pid, jobId: 1, event: 'submitted', msg: 'one', time: /^\d{4}-\d\d-\d\dT.*Z$/ }, 'first line')
  t.match(lines[1], { worker: 'w1', event: 'started' }, 'the second logger adds its binding to the same file')
})

t.test('with LOG_FILE, the server and its worker log a job\'s life to one file', async (t) => {
  const token = 'log-test-token-abcdef'
  const logFile = join(t.testdir({}), 'nonstop.log')
  const server = await startServer(t, { LOG_FILE: logFile, API_TOKEN: token, MAX_CONCURRENCY: '1', WARM_SPARE: 'false' })
  const submitted = await api(server.url, '/api/jobs', { body: { n: 3, steps: 2, seed: 5 }, headers: { authorization: `Bearer ${token}` } })
  t.equal(submitted.status, 201, 'submitted')
  const id = submitted.body.id
  await waitFor(async () => (await api(server.url, `/api/jobs/${id}`)).body.status === 'done', 30_000, 'the job to finish')

  const lines = (): Array<Record<string, any>> =>
    readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  const events = await waitFor(() => {
    const mine = lines().filter((l) => l.jobId === id)
    return mine.some((l) => l.event === 'done') ? mine : null
  }, 10_000, 'the done line')
  const serverPid = server.proc.pid
  const byEvent = (event: string) => events.find((l) => l.event === event)
  t.match(byEvent('submitted'), { pid: serverPid, jobId: id, level: 30 }, 'submitted, by the server')
  const started = byEvent('started')
  t.ok(started, 'started is logged')
  t.not(started?.pid, serverPid, 'started, by another process: the worker')
  t.type(started?.worker, 'string', 'the worker line carries the worker binding')
  // The scheduler writes the claim, naming the worker it handed the job to (its token and pid).
  t.match(byEvent('claimed'), { jobId: id, attempt: 1, worker: started?.worker, workerPid: started?.pid, pid: serverPid }, 'claimed by the server, naming the worker')
  const done = byEvent('done')
  t.equal(done?.pid, started?.pid, 'done, by the same worker')
  t.type(done?.elapsedMs, 'number', 'done has elapsedMs')
  t.type(done?.gflops, 'number', 'and gflops')
  const order = ['submitted', 'claimed', 'started', 'done'].map((e) => events.findIndex((l) => l.event === e))
  t.same([...order].sort((x, y) => x - y), order, 'in lifecycle order in the file')

  const all = lines()
  t.ok(all.some((l) => l.msg === 'incoming request' && l.req?.url === '/api/jobs' && l.req?.method === 'POST'), 'one line per request, from Fastify')
  t.ok(all.every((l) => typeof l.time === 'string' && typeof l.level === 'number' && typeof l.pid === 'number'), 'every line is pino JSON')
  t.notMatch(readFileSync(logFile, 'utf8'), token, 'the API token is not in the log')
  t.equal(await server.stop(), 0, 'the server stops cleanly')
})
