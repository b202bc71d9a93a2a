import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { NodeRow } from '../store/job-store.js'

/** What the nodes route needs. */
export interface NodeRoutesOptions {
  /** Every node known, newest heartbeat first (the store's nodes()). */
  list: () => Promise<NodeRow[]>
  /** This server's node id, marked `self` in the answer. */
  self?: string
}

const NodeSchema = Type.Object({
  nodeId: Type.String({ description: 'stable per machine and port (NODE_ID, or host:port)' }),
  host: Type.String(),
  pid: Type.Integer({ description: 'the server process on its host' }),
  startedAt: Type.String({ format: 'date-time' }),
  heartbeatAt: Type.String({ format: 'date-time' }),
  heartbeatAgeMs: Type.Integer({ minimum: 0, description: 'since its last heartbeat, by the database\'s clock' }),
  running: Type.Integer({ minimum: 0, description: 'jobs its workers are computing' }),
  leaseMs: Type.Union([Type.Integer(), Type.Null()], { description: 'its LEASE_MS: other nodes take its jobs over only after a silence this long (null: a server too old to say)' }),
  self: Type.Boolean({ description: 'whether this is the server answering' })
}, { description: 'a server sharing the database' })

const NodeList = Type.Object({ nodes: Type.Array(NodeSchema) }, { description: 'every node known, newest heartbeat first' })

/** The API form of a row of the nodes table. */
export function toNode (row: NodeRow, self?: string) {
  return {
    nodeId: row.node_id,
    host: row.host,
    pid: row.pid,
    startedAt: new Date(row.started_at).toISOString(),
    heartbeatAt: new Date(row.heartbeat_at).toISOString(),
    heartbeatAgeMs: Math.max(0, Math.round(row.silent_ms)),
    running: row.running,
    leaseMs: row.lease_ms ?? null,
    self: row.node_id === self
  }
}

/** GET /api/nodes: the servers sharing the database, from its nodes table. */
export const nodeRoutes: FastifyPluginAsync<NodeRoutesOptions> = async (instance, { list, self }) => {
  const app = instance.withTypeProvider<TypeBoxTypeProvider>()
  app.get('/api/nodes', {
    schema: {
      summary: 'The servers sharing the database',
      description: 'Every node in the nodes table, newest heartbeat first: its host and process, when it started, how long since its last heartbeat (by the database\'s clock) and how many jobs run on it. A node whose heartbeat is old has stopped or lost the database.',
      tags: ['ops'],
      response: { 200: NodeList }
    }
  }, async () => ({ nodes: (await list()).map((row) => toNode(row, self)) }))
}
