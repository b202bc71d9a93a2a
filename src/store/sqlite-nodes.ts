/**
 * The nodes table and the periodic-work slots (migrations/007) on SQLite. One server per database file, so there is
 * one live node; the same calls serve several nodes on PostgreSQL (src/store/postgres.ts).
 */
import { type Db, statementPreparer } from '../db.js'
import type { StoreOptions } from '../jobs/store.js'
import type { NewNode, NodeRow } from './job-store.js'

export interface SqliteNodes {
  register (node: NewNode): void
  beat (nodeId: string, pid: number): boolean
  list (): NodeRow[]
  leave (nodeId: string, pid: number): void
  forget (silentForMs: number): number
  claimPeriodic (name: string, intervalMs: number): boolean
}

export function createSqliteNodes (db: Db, clock: () => number = Date.now, { eager = true }: StoreOptions = {}): SqliteNodes {
  const prepared = statementPreparer(eager)
  const registerStmt = prepared(() => db.prepare<{ node_id: string, boot_id: string, pid: number, host: string, lease_ms: number | null, now: number }>(`
    INSERT INTO nodes (node_id, boot_id, pid, host, lease_ms, started_at, heartbeat_at) VALUES (@node_id, @boot_id, @pid, @host, @lease_ms, @now, @now)
    ON CONFLICT (node_id) DO UPDATE SET boot_id = excluded.boot_id, pid = excluded.pid, host = excluded.host,
      lease_ms = excluded.lease_ms, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`))
  const beatStmt = prepared(() => db.prepare<{ node_id: string, pid: number, now: number }>(
    'UPDATE nodes SET heartbeat_at = @now WHERE node_id = @node_id AND pid = @pid'))
  const listStmt = prepared(() => db.prepare<[], Omit<NodeRow, 'silent_ms'>>(`
    SELECT n.*, (SELECT count(*) FROM jobs j WHERE j.status = 'running' AND j.node = n.node_id) AS running
    FROM nodes n ORDER BY heartbeat_at DESC, node_id`))
  const leaveStmt = prepared(() => db.prepare<{ node_id: string, pid: number }>('DELETE FROM nodes WHERE node_id = @node_id AND pid = @pid'))
  const forgetStmt = prepared(() => db.prepare<{ before: number }>(`
    DELETE FROM nodes WHERE heartbeat_at < @before
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.status = 'running' AND j.node = nodes.node_id)`))
  const slotStmt = prepared(() => db.prepare<{ name: string, now: number, interval: number }>(`
    INSERT INTO periodic (name, last_at) VALUES (@name, @now)
    ON CONFLICT (name) DO UPDATE SET last_at = excluded.last_at WHERE periodic.last_at <= @now - @interval`))
  return {
    register: (node) => { registerStmt().run({ ...node, lease_ms: node.lease_ms ?? null, now: clock() }) },
    beat: (nodeId, pid) => beatStmt().run({ node_id: nodeId, pid, now: clock() }).changes === 1,
    list: () => {
      const now = clock()
      return listStmt().all().map((n) => ({ ...n, silent_ms: Math.max(0, now - n.heartbeat_at) }))
    },
    leave: (nodeId, pid) => { leaveStmt().run({ node_id: nodeId, pid }) },
    forget: (silentForMs) => forgetStmt().run({ before: clock() - silentForMs }).changes,
    claimPeriodic: (name, intervalMs) => slotStmt().run({ name, now: clock(), interval: intervalMs }).changes === 1
  }
}
