import { spawn } from 'node:child_process'
import { once } from 'node:events'
import t from 'tap'
import { bootId, checkProcess, hasProc, processStartTime } from '../src/process-identity.js'

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
