/**
 * Which process a pid is. A pid alone names nothing for long: after a worker dies, or after a restart of the
 * machine or container, the OS gives its number to another process. Before the server trusts a stored pid (is
 * the worker alive?) or signals it (cancel, timeout, stop), it checks the process is the one recorded: the same
 * start time (/proc/<pid>/stat field 22, clock ticks since boot) and, for a worker, its token in the command line
 * (the worker is forked with its token as argument). Linux /proc only; elsewhere nothing can be verified.
 */
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs'

/** What a stored pid turned out to be. */
export type ProcessCheck =
  /** The process recorded, able to run. */
  | 'running'
  /** The process recorded, stopped (SIGSTOP, a debugger): it cannot make progress. */
  | 'stopped'
  /** No such process any more (or a zombie). */
  | 'gone'
  /** A process with that pid exists, but it is another one: never trust or signal it. */
  | 'foreign'
  /** A process with that pid exists; without /proc there is no telling which one: never signal it. */
  | 'unverified'

/** Fields of /proc/<pid>/stat after the command name, which may itself contain spaces and parentheses. */
function statFields (pid: number | 'self'): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

let procMounted: boolean | undefined
/** Whether this system has a Linux /proc to read identities from. */
export function hasProc (): boolean {
  procMounted ??= statFields('self') !== undefined
  return procMounted
}

/** Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22); undefined when unknown. */
export function processStartTime (pid: number | 'self' = 'self'): number | undefined {
  const fields = statFields(pid)
  const start = fields ? Number(fields[19]) : NaN
  return Number.isFinite(start) ? start : undefined
}

/** This boot of the machine (start times count from it); undefined without /proc. */
export function bootId (): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return undefined
  }
}

/** Whether a process with this pid exists on this machine (EPERM: it exists, owned by someone else). */
export function processExists (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Checks that `pid` is still the process recorded: started at `start` (when known) and, when `token` is
 * given, carrying it as a command-line argument. Without /proc, a live pid is only 'unverified'.
 */
export function checkProcess (pid: number, expected: { start?: number | null, token?: string | null }): ProcessCheck {
  if (!Number.isInteger(pid) || pid <= 0) return 'gone'
  if (!hasProc()) return processExists(pid) ? 'unverified' : 'gone'
  const fields = statFields(pid)
  if (!fields) return 'gone'
  const state = fields[0]
  if (state === 'Z' || state === 'X' || state === 'x') return 'gone'
  if (expected.start != null && Number(fields[19]) !== expected.start) return 'foreign'
  if (expected.token) {
    let argv: string[]
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    } catch {
      return 'foreign'
    }
    if (!argv.includes(expected.token)) return 'foreign'
  }
  return state === 'T' || state === 't' ? 'stopped' : 'running'
}

/**
 * Whether process `pid` has the file `path` open (a link in /proc/<pid>/fd resolves to it): false when it has not, or
 * cannot be read (gone), undefined only without /proc. A worker opens the database once all its imports are loaded, so this tells a
 * worker that has booted from one still loading, whatever the machine's load.
 */
export function hasFileOpen (pid: number, path: string): boolean | undefined {
  if (!hasProc()) return undefined
  let wanted: string
  let fds: string[]
  try {
    wanted = realpathSync(path)
    fds = readdirSync(`/proc/${pid}/fd`)
  } catch {
    return false
  }
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === wanted) return true
    } catch {}
  }
  return false
}
