/**
 * This node's row in the nodes table: registered at start (node id, the machine's boot id, pid, host), beaten every
 * second, removed at a clean stop. Other nodes read it to tell a node that is up from one that is gone; this node
 * reads its own previous row at start to know whether the workers it left running are of this machine's boot.
 *
 * Nothing here ever throws to its caller: a database that cannot be reached is logged (not on every beat) and tried
 * again at the next beat, which registers afresh when the row is missing.
 */
import { hostname } from 'node:os'
import type { Logger } from '../log.js'
import { bootId } from '../process-identity.js'
import type { AsyncJobStore, NodeRow } from '../store/job-store.js'

/** How often the node beats. */
export const NODE_BEAT_MS = 1000

/** A failure that repeats is logged again at most this often. */
const RELOG_MS = 60_000

/** The boot id recorded for a node on a system without /proc: never equal to a real one. */
export const UNKNOWN_BOOT = 'unknown'

export interface NodeMembershipOptions {
  store: Pick<AsyncJobStore, 'registerNode' | 'beatNode' | 'nodes' | 'leaveNode'>
  nodeId: string
  log: Logger
  beatMs?: number
  /** For tests: this machine's boot id and this process. */
  boot?: string
  pid?: number
  host?: string
  /** This node's LEASE_MS, recorded with it: other nodes wait that long for its silent workers. */
  leaseMs?: number
}

export type NodeMembership = ReturnType<typeof createNodeMembership>

export function createNodeMembership ({ store, nodeId, log, beatMs = NODE_BEAT_MS, boot = bootId() ?? UNKNOWN_BOOT, pid = process.pid, host = hostname(), leaseMs }: NodeMembershipOptions) {
  let timer: NodeJS.Timeout | null = null
  let registered = false
  let beating = false
  let stopped = false
  /** The last failure logged, and when, so an outage is not logged once a second. */
  let lastLogged = { what: '', at: 0 }

  function failed (what: string, err: unknown): void {
    const now = Date.now()
    if (lastLogged.what === what && now - lastLogged.at < RELOG_MS) return
    lastLogged = { what, at: now }
    log.error({ err, nodeId }, `node membership: ${what} failed; trying again`)
  }

  async function register (): Promise<boolean> {
    try {
      await store.registerNode({ node_id: nodeId, boot_id: boot, pid, host, lease_ms: leaseMs })
      if (!registered) log.info({ nodeId, boot, pid, host }, 'node registered')
      registered = true
      lastLogged = { what: '', at: 0 }
      return true
    } catch (err) {
      failed('registering the node', err)
      return false
    }
  }

  async function beat (): Promise<void> {
    if (beating || stopped) return
    beating = true
    try {
      if (!registered) {
        await register()
        return
      }
      if (await store.beatNode(nodeId, pid)) return
      // The row is gone (deleted by hand, or this node was taken for dead) or another process holds the id.
      const holder = (await store.nodes()).find((n) => n.node_id === nodeId)
      if (holder && (holder.pid !== pid || holder.host !== host)) {
        // Two processes with one NODE_ID: fighting over the row would flip it every second. Say so and leave it.
        failed('beating', new Error(`node id ${nodeId} is registered by pid ${holder.pid} on ${holder.host}: two nodes share NODE_ID`))
        return
      }
      registered = false
      await register()
    } catch (err) {
      failed('beating', err)
    } finally {
      beating = false
    }
  }

  return {
    boot,
    /**
     * Reads this node's previous row (left by a server that did not stop cleanly), then registers and starts
     * beating. Returns that previous row, or undefined when there is none or it cannot be read.
     */
    async start (): Promise<NodeRow | undefined> {
      let previous: NodeRow | undefined
      try {
        previous = (await store.nodes()).find((n) => n.node_id === nodeId)
      } catch (err) {
        failed('reading the nodes', err)
      }
      await register()
      if (!stopped && timer === null) {
        timer = setInterval(() => { beat().catch(() => {}) }, beatMs)
        timer.unref()
      }
      return previous
    },

    /** Whether the node's row is written (false while the database cannot be reached at start). */
    registered: (): boolean => registered,

    /** Stops beating and removes the row. */
    async stop (): Promise<void> {
      stopped = true
      if (timer) clearInterval(timer)
      timer = null
      try {
        await store.leaveNode(nodeId, pid)
      } catch (err) {
        failed('leaving', err)
      }
    }
  }
}
