import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { freePort, npmStartFlags, npmStartScript, ROOT, waitFor } from './fixtures/helpers.js'

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
  // npm's shell ran scripts/server-flags.js (`exec` makes the server npm's own child): this Node version's flags.
  const server = childrenOf(proc.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('dist/server.js'))
  t.ok(server, "the server is npm's child")
  const argv = readFileSync(`/proc/${server}/cmdline`, 'utf8').split('\0').filter(Boolean)
  // The flags of the Node that npm's shell found on PATH, which the server runs on.
  const version = execFileSync(`/proc/${server}/exe`, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim()
  t.same(argv.slice(1), [...npmStartFlags(version), 'dist/server.js'], `Node ${version}: the server runs with ${argv.slice(1, -1).join(' ')}`)
  // Ctrl+C in a terminal signals the whole foreground group: npm, the server and its workers.
  const exited = once(proc, 'exit')
  process.kill(-proc.pid!, 'SIGINT')
  await exited
  t.match(output, /"msg":"stopped"/, 'the server shut down gracefully')
  t.notMatch(output, /shutdown (failed|took too long)/, 'without a forced exit')
})

t.test("the server's Node flags: heap limits on every version, and on Node >= 22 the two that keep its memory within 120 MB", async (t) => {
  const heap = ['--max-semi-space-size=2', '--max-old-space-size=128']
  t.same(npmStartFlags('20.11.0'), heap, 'Node 20: the heap limits only (--optimize-for-size costs latency there, and memory is within target)')
  t.same(npmStartFlags('22.1.0'), [...heap, '--optimize-for-size', '--no-maglev'], 'Node 22')
  t.same(npmStartFlags('v24.22.3'), [...heap, '--optimize-for-size', '--no-maglev'], 'Node 24, with the v of process.version')
  t.throws(() => npmStartFlags('latest'), 'not a version: the script fails rather than print nothing')
  // npm start's shell fragment that reads the flags, run as npm runs it, with code preloaded through NODE_OPTIONS
  // that prints to stdout: what it prints must not reach the server's command line.
  const start = npmStartScript()
  const read = start.slice(0, start.indexOf(' && exec '))
  const dir = t.testdir({ 'chatty.cjs': "process.stdout.write('--inspect-brk chatty.js ')\n" })
  const printed = execFileSync('sh', ['-c', `${read} && echo "$flags"`], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: `--require ${join(dir, 'chatty.cjs')}` } })
  t.same(printed.trim().split(/\s+/), npmStartFlags(), 'NODE_OPTIONS does not reach the flags script')
  t.throws(() => execFileSync('sh', ['-c', `${read.replace('scripts/server-flags.js', 'scripts/server-flags.js not-a-version')} && echo started`], { cwd: ROOT, stdio: 'pipe' }), 'a failing flags script stops npm start before the server runs')
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

/** Pids whose parent is `pid`, from /proc. */
function childrenOf (pid: number): number[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try {
      // The command name may hold spaces and parentheses; the parent pid comes after the last ')'.
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid
    } catch {
      return false
    }
  }).map(Number)
}

const alive = (pid: number): boolean => {
  try {
    // A zombie has exited; only its parent has yet to reap it.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))
  } catch {
    return false
  }
}

t.test('`kill <npm pid>` stops the server gracefully: node replaces the script shell, and its workers go too', async (t) => {
  const port = await freePort()
  const dir = t.testdir({})
  const logFile = join(dir, 'server.log')
  const npm = spawn('npm', ['start'], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), DB_PATH: join(dir, 'kill.db'), LOG_FILE: logFile, LOG_LEVEL: 'info', WARM_SPARE: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true
  })
  let output = ''
  npm.stdout.on('data', (c) => { output += c })
  npm.stderr.on('data', (c) => { output += c })
  t.teardown(() => { try { process.kill(-npm.pid!, 'SIGKILL') } catch {} })
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => {
    if (npm.exitCode !== null) throw new Error(`npm start exited ${npm.exitCode}: ${output}`)
    try { return (await fetch(`${url}/healthz`)).ok } catch { return false }
  }, 120_000, 'npm start to answer /healthz')

  t.match(output, new RegExp(`nonstop ready at http://127\\.0\\.0\\.1:${port}/`), 'with LOG_FILE set, the URL is still printed to the terminal')
  const [server] = childrenOf(npm.pid!)
  t.match(readFileSync(`/proc/${server}/cmdline`, 'utf8'), /^node\0.*dist\/server\.js/, 'npm\'s child is node itself, not a shell')
  const workers = await waitFor(() => { const w = childrenOf(server); return w.length > 0 ? w : null }, 20_000, 'a warm spare worker')

  const exited = once(npm, 'exit')
  const killedAt = Date.now()
  process.kill(npm.pid!, 'SIGTERM')
  await exited
  await waitFor(() => !alive(server) && workers.every((w) => !alive(w)), 15_000, 'the server and its workers to exit')
  t.ok(Date.now() - killedAt < 15_000, `everything stopped within ${Date.now() - killedAt} ms`)
  await t.rejects(fetch(`${url}/healthz`), 'the port is closed')
  const log = readFileSync(logFile, 'utf8')
  t.match(log, /"signal":"SIGTERM","msg":"shutting down/, 'the server got the SIGTERM')
  t.match(log, /"msg":"stopped"/, 'and stopped gracefully')
  t.notMatch(log, /shutdown (failed|took too long)/, 'without a forced exit')
})

t.test('a server whose parent dies without passing a signal on stops by itself', async (t) => {
  const port = await freePort()
  const dir = t.testdir({})
  const logFile = join(dir, 'server.log')
  // `; true` keeps the shell around as the server's parent, as `sh -c` does without exec.
  const shell = spawn('sh', ['-c', `"${process.execPath}" dist/server.js; true`], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), DB_PATH: join(dir, 'orphan.db'), LOG_FILE: logFile, LOG_LEVEL: 'info' },
    stdio: 'ignore',
    detached: true
  })
  t.teardown(() => { try { process.kill(-shell.pid!, 'SIGKILL') } catch {} })
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => { try { return (await fetch(`${url}/healthz`)).ok } catch { return false } }, 30_000, 'the server')
  const [server] = childrenOf(shell.pid!)
  t.ok(server, 'the server runs under the shell')
  process.kill(shell.pid!, 'SIGKILL')
  await waitFor(() => !alive(server), 15_000, 'the orphaned server to stop')
  const log = readFileSync(logFile, 'utf8')
  t.match(log, /the process that started the server is gone/, 'it noticed its parent was gone')
  t.match(log, /"msg":"stopped"/, 'and stopped gracefully')
})
