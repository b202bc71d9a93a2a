import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import pino, { type Logger } from 'pino'

export type { Logger }

/** What the logger needs to know: a level and, optionally, a file to append to. */
export interface LogOptions {
  readonly logLevel: string
  readonly logFile?: string | undefined
}

/**
 * The one pino factory, used by the server and by every worker. Lines go to stdout, or are appended to
 * LOG_FILE (one write per line, so the server and its workers can share the file and `tail -f` it).
 * Writes are synchronous: a worker killed a moment later has still logged what it did.
 */
export function createLogger (options: LogOptions, bindings: Record<string, unknown> = {}): Logger {
  if (options.logFile) mkdirSync(dirname(options.logFile), { recursive: true })
  const destination = options.logFile
    ? pino.destination({ dest: options.logFile, append: true, sync: true })
    : pino.destination({ dest: 1, sync: true })
  return pino({
    level: options.logLevel,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' }
  }, destination)
}
