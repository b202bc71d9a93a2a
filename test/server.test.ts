import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import t from 'tap'
import { freePort, ROOT, waitFor } from './fixtures/helpers.js'

t.test('`npm start`, as the README says, builds and serves /healthz and the dashboard; Ctrl+C stops it cleanly', async (t) => {
  const port = await freePort()
  const dir = t.testdir({})
  const proc = spawn('npm', ['start'], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), DB_PATH: join(dir, 'start.db'), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true
  })
  let output = ''
  proc.stdout.on('data', (c) => { output += c })
  proc.stderr.on('data', (c) => { output += c })
  t.teardown(() => { try { process.kill(-proc.pid!, 'SIGKILL') } catch {} })
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => {
    if (proc.exitCode !== null) throw new Error(`npm start exited ${proc.exitCode}: ${output}`)
    try { return (await fetch(`${url}/healthz`)).ok } catch { return false }
  }, 120_000, 'npm start to answer /healthz')
  const health = await fetch(`${url}/healthz`)
  t.equal(health.status, 200, '/healthz 200')
  t.same(await health.json(), { status: 'ok' }, '/healthz body')
  const page = await fetch(`${url}/`)
  t.equal(page.status, 200, 'dashboard 200')
  t.match(await page.text(), /Start job/, 'the page has the Start job button')
  // Ctrl+C in a terminal signals the whole foreground group: npm, the server and its workers.
  const exited = once(proc, 'exit')
  process.kill(-proc.pid!, 'SIGINT')
  await exited
  t.match(output, /"msg":"stopped"/, 'the server shut down gracefully')
  t.notMatch(output, /shutdown (failed|took too long)/, 'without a forced exit')
})

t.test('an invalid setting is a clear message and exit code 1', async (t) => {
  const proc = spawn(process.execPath, [join(ROOT, 'dist/server.js')], {
    cwd: t.testdir({}),
    env: { ...process.env, PORT: 'eighty', DB_PATH: join(t.testdir({}), 'x.db') },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stderr = ''
  proc.stderr.on('data', (c) => { stderr += c })
  const [code] = await once(proc, 'exit')
  t.equal(code, 1, 'exit code 1')
  t.match(stderr, /invalid configuration: PORT must be an integer, got "eighty"/, 'message names the variable')
})
