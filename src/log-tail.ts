import { open } from 'node:fs/promises'

/** One log line of a job, as the API shows it. */
export interface JobLogLine {
  time: string
  level: string
  msg: string
  /** The rest of the line's fields (event, step, reason, worker…), as JSON, at most 1000 characters. */
  fields: string
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }

/**
 * The lines of the JSON log file `file` (pino, LOG_FILE) whose `jobId` is `jobId`, oldest first: only the last
 * `maxBytes` of the file are read, and at most the last `maxLines` matching lines kept, so a large log costs a
 * bounded read. Returns how many bytes were read; a missing file reads as empty.
 */
export async function readJobLogLines (file: string, jobId: number, { maxBytes = 1 << 20, maxLines = 200 } = {}): Promise<{ lines: JobLogLine[], bytesRead: number }> {
  let handle
  try {
    handle = await open(file, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { lines: [], bytesRead: 0 }
    throw err
  }
  try {
    const { size } = await handle.stat()
    const start = Math.max(0, size - maxBytes)
    const buffer = Buffer.alloc(size - start)
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start)
    const text = buffer.subarray(0, bytesRead).toString('utf8')
    const raw = text.split('\n')
    if (start > 0) raw.shift() // the first line was cut by the offset
    const needle = `"jobId":${jobId}`
    const lines: JobLogLine[] = []
    for (const line of raw) {
      if (!line.includes(needle)) continue
      let parsed: Record<string, unknown>
      try {
        parsed = JSON.parse(line)
      } catch {
        continue
      }
      if (parsed.jobId !== jobId) continue
      const { time, level, msg, jobId: _id, pid: _pid, hostname: _host, ...rest } = parsed
      const at = typeof time === 'number' ? time : Date.parse(String(time))
      lines.push({
        // A job type may log a `time` of its own: shown as it is when it is not a date.
        time: Number.isFinite(at) && Math.abs(at) <= 8.64e15 ? new Date(at).toISOString() : String(time).slice(0, 100),
        level: LEVELS[level as number] ?? String(level),
        msg: String(msg ?? ''),
        fields: JSON.stringify(rest).slice(0, 1000)
      })
      if (lines.length > maxLines) lines.shift()
    }
    return { lines, bytesRead }
  } finally {
    await handle.close()
  }
}
