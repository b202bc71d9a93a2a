/**
 * One server per database. Two servers scheduling the same jobs would adopt each other's workers and release
 * each other's jobs, so the server that schedules holds the single row of `server_lock` (migrations/003) and
 * refreshes its heartbeat every second. Another server takes the row only from a holder that is verifiably
 * gone: on this machine, its pid no longer names the process that took it (start time from /proc) or the
 * machine has rebooted since; on another host, whose process cannot be checked, after STALE_MS of silence.
 * Otherwise it refuses, naming the holder, before it has touched a job.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Db } from './db.js'
import { bootId, checkProcess, processStartTime } from './process-identity.js'

/** A holder on another host (or one that cannot be checked) silent this long is taken as gone. */
export const STALE_MS = 15_000

/** How often the holder refreshes its heartbeat. */
export const LOCK_HEARTBEAT_MS = 1000

/** The row, as stored. */
interface LockRow {
  holder: string
  pid: number
  pid_start: number | null
  boot_id: string | null
  host: string
  started_at: number
  heartbeat_at: number
}

/** Another server holds the database; the message names it (pid, host, since when). */
export class ServerLockHeldError extends Error {
  override name = 'ServerLockHeldError'
  constructor (readonly holder: { pid: number, host: string, startedAt: number, heartbeatAt: number }, now: number) {
    super(`another nonstop server holds this database: pid ${holder.pid} on ${holder.host}, since ` +
      `${new Date(holder.startedAt).toISOString()} (last heartbeat ${Math.round((now - holder.heartbeatAt) / 1000)} s ago); ` +
      'stop it first, or give this server its own DB_PATH')
  }
}

/** The lock this server holds. */
export interface ServerLock {
  /** Random id of this holding. */
  readonly holder: string
  /** Refreshes the heartbeat; false when the row is no longer ours (another server took it over). */
  refresh (): boolean
  /** Gives the database up (graceful stop). */
  release (): void
}

/** Whether the holder of `row` is certainly not running any more. */
function holderGone (row: LockRow, now: number): boolean {
  const here = hostname()
  const boot = bootId()
  if (row.host !== here) return now - row.heartbeat_at > STALE_MS
  if (row.boot_id && boot && row.boot_id !== boot) return true // This machine has rebooted since.
  const state = checkProcess(row.pid, { start: row.pid_start })
  if (state === 'gone' || state === 'foreign') return true
  // Without /proc a live pid may be anyone's: only a long silence frees the row then.
  return state === 'unverified' && now - row.heartbeat_at > STALE_MS
}

/**
 * Takes the database for this server, in one BEGIN IMMEDIATE transaction, or throws ServerLockHeldError when
 * another server holds it. Changes nothing else.
 */
export function acquireServerLock (db: Db, clock: () => number = Date.now): ServerLock {
  const getStmt = db.prepare<[], LockRow>('SELECT * FROM server_lock WHERE id = 1')
  const takeStmt = db.prepare<Omit<LockRow, 'heartbeat_at'>>(`
    INSERT OR REPLACE INTO server_lock (id, holder, pid, pid_start, boot_id, host, started_at, heartbeat_at)
    VALUES (1, @holder, @pid, @pid_start, @boot_id, @host, @started_at, @started_at)`)
  const refreshStmt = db.prepare<{ holder: string, now: number }>('UPDATE server_lock SET heartbeat_at = @now WHERE id = 1 AND holder = @holder')
  const releaseStmt = db.prepare<[string]>('DELETE FROM server_lock WHERE id = 1 AND holder = ?')
  const holder = randomBytes(8).toString('hex')

  db.transaction(() => {
    const now = clock()
    const row = getStmt.get()
    if (row && !holderGone(row, now)) {
      throw new ServerLockHeldError({ pid: row.pid, host: row.host, startedAt: row.started_at, heartbeatAt: row.heartbeat_at }, now)
    }
    takeStmt.run({ holder, pid: process.pid, pid_start: processStartTime() ?? null, boot_id: bootId() ?? null, host: hostname(), started_at: now })
  }).immediate()

  return {
    holder,
    refresh: () => refreshStmt.run({ holder, now: clock() }).changes === 1,
    release: () => { releaseStmt.run(holder) }
  }
}
