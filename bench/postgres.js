// A throwaway PostgreSQL cluster for a bench (the tests' fixture, test/fixtures/postgres.ts, does the same under
// tap): Debian's binaries, initdb in a temp folder owned by the `postgres` user when run as root, a free port on
// 127.0.0.1, socket in that folder; stop() stops it (immediate) and removes the folder. Never the machine's cluster.
import { execFileSync, spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

function pgBin () {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => b - a) : []
  if (!versions.length) throw new Error('PostgreSQL is not installed (apt-get install -y postgresql)')
  return join(root, versions[0], 'bin')
}

const freePort = () => new Promise((resolve, reject) => {
  const probe = createServer()
  probe.once('error', reject)
  probe.listen(0, '127.0.0.1', () => { const { port } = probe.address(); probe.close(() => resolve(port)) })
})

export async function startPostgres () {
  const bin = pgBin()
  const asRoot = process.getuid?.() === 0
  const dir = mkdtempSync(join(tmpdir(), 'nonstop-bench-pg-'))
  const data = join(dir, 'data')
  if (asRoot) {
    const id = (flag) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim())
    chownSync(dir, id('-u'), id('-g'))
  }
  const run = (cmd, args, timeout) => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]] : [join(bin, cmd), args]
    const r = spawnSync(file, argv, { encoding: 'utf8', timeout, cwd: dir })
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}${r.stdout}`)
  }
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--locale=C'], 60_000)
  const port = await freePort()
  // Durable settings as a server would run them (fsync on), but the socket and data in the temp folder.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`
  run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', '-t', '30', 'start'], 40_000)
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    try { run('pg_ctl', ['-D', data, 'stop', '-m', 'immediate', '-w', '-t', '10'], 15_000) } catch {}
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', stop)
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`
  let n = 0
  const createDatabase = async () => {
    const { default: pg } = await import('pg')
    const name = `bench_${++n}`
    const admin = new pg.Client({ connectionString: adminUrl })
    await admin.connect()
    try { await admin.query(`CREATE DATABASE ${name}`) } finally { await admin.end() }
    return `postgres://postgres@127.0.0.1:${port}/${name}`
  }
  return { adminUrl, port, createDatabase, stop }
}
