import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { readJobLogLines } from '../src/log-tail.js'

t.test('the lines of one job, from the end of the file only', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'log.json')
  const line = (jobId: number, msg: string, extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ level: 30, time: 1_700_000_000_000, pid: 1, hostname: 'h', jobId, msg, ...extra })
  const lines = [line(7, 'old one'), ...Array.from({ length: 300 }, (_, i) => line(i % 2 ? 7 : 70, `line ${i}`, { event: 'progress', step: i })), 'not json "jobId":7', line(17, 'other')]
  writeFileSync(file, lines.join('\n') + '\n')
  const all = await readJobLogLines(file, 7, { maxBytes: 1 << 20, maxLines: 1000 })
  t.equal(all.lines.length, 151, 'every line of job 7 (not 70, 17, nor a broken line)')
  t.same(all.lines[1], { time: '2023-11-14T22:13:20.000Z', level: 'info', msg: 'line 1', fields: '{"event":"progress","step":1}' }, 'a line as the API shows it')
  t.equal((await readJobLogLines(file, 7, { maxBytes: 1 << 20, maxLines: 10 })).lines.length, 10, 'at most maxLines, the latest')
  const tail = await readJobLogLines(file, 7, { maxBytes: 2000, maxLines: 1000 })
  t.ok(tail.bytesRead <= 2000 && tail.lines.length < 20 && tail.lines.at(-1)?.msg === 'line 299', `only the last 2000 bytes read (${tail.lines.length} lines)`)
  t.same(await readJobLogLines(join(dir, 'missing'), 7), { lines: [], bytesRead: 0 }, 'a missing file reads as empty')
  writeFileSync(file, JSON.stringify({ level: 30, time: 'soon', jobId: 8, msg: 'a job type\'s own time field' }) + '\n')
  t.same((await readJobLogLines(file, 8)).lines.map((l) => l.time), ['soon'], 'a time that is not a date is shown as it is, not a 500')
})
