import { spawn } from 'node:child_process'
import { once } from 'node:events'
import t from 'tap'
import { bootId, checkProcess, hasFileOpen, hasProc, processStartTime } from '../src/process-identity.js'

t.test('a pid is checked against the start time and the token recorded for it', { skip: !hasProc() && 'needs Linux /proc' }, async (t) => {
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' })
  t.teardown(() => { sleeper.kill('SIGKILL') })
  await once(sleeper, 'spawn')
  const pid = sleeper.pid as number
  const start = processStartTime(pid)
  t.ok(start && start > 0, `start time read (${start} ticks since boot)`)
  t.ok(bootId(), 'boot id read')
  t.equal(checkProcess(pid, { start }), 'running', 'the same process: running')
  t.equal(checkProcess(pid, { start: (start as number) - 1 }), 'foreign', 'another start time: another process')
  t.equal(checkProcess(pid, { start, token: 'worker-token' }), 'foreign', 'no worker token in its command line: another process')
  t.equal(checkProcess(process.pid, { start: processStartTime(), token: process.argv[1] }), 'running', 'an argument of the command line matches')
  sleeper.kill('SIGSTOP')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(checkProcess(pid, { start }), 'stopped', 'SIGSTOP: stopped')
  sleeper.kill('SIGKILL')
  await once(sleeper, 'exit')
  t.equal(checkProcess(pid, { start }), 'gone', 'killed and reaped: gone')
  t.equal(checkProcess(0, {}), 'gone', 'no pid 0')
})

t.test('a process is seen to have a file open only while it holds it', { skip: !hasProc() && 'needs Linux /proc' }, async (t) => {
  const { mkdtempSync, writeFileSync, rmSync, symlinkSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dir = mkdtempSync(join(tmpdir(), 'nonstop-fd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'held.db')
  writeFileSync(file, 'x')
  symlinkSync(file, join(dir, 'alias.db'))
  // A shell that opens the file on fd 3 and keeps it while it sleeps.
  const holder = spawn('sh', ['-c', `exec 3<"${file}"; exec sleep 30`], { stdio: 'ignore' })
  const other = spawn('sleep', ['30'], { stdio: 'ignore' })
  t.teardown(() => { holder.kill('SIGKILL'); other.kill('SIGKILL') })
  await Promise.all([once(holder, 'spawn'), once(other, 'spawn')])
  const deadline = Date.now() + 5000
  while (hasFileOpen(holder.pid as number, file) !== true && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(hasFileOpen(holder.pid as number, file), true, 'the holder has it open')
  t.equal(hasFileOpen(holder.pid as number, join(dir, 'alias.db')), true, 'named through a symlink, the same file')
  t.equal(hasFileOpen(other.pid as number, file), false, 'another process does not')
  holder.kill('SIGKILL')
  await once(holder, 'exit')
  t.equal(hasFileOpen(holder.pid as number, file), false, 'once it is gone: false, never unknown')
})
