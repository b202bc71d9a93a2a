import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { AsyncJobStore } from '../store/job-store.js'
import { ErrorReply, ThroughputQuery, ThroughputReply } from './schemas.js'

/** GET /api/stats/throughput: jobs finished per minute and the queue, from SQL (indexed on finished_at). */
export const statsRoutes: FastifyPluginAsync<{ store: Pick<AsyncJobStore, 'throughput'> }> = async (instance, { store }) => {
  const app = instance.withTypeProvider<TypeBoxTypeProvider>()
  app.get('/api/stats/throughput', {
    schema: {
      summary: 'Jobs finished per minute, and the queue',
      description: 'Done and failed jobs in each of the last `minutes` minutes (the current one last, still filling), and the pending and running jobs now.',
      tags: ['stats'],
      querystring: ThroughputQuery,
      response: { 200: ThroughputReply, 400: ErrorReply }
    }
  }, async (req) => {
    const t = await store.throughput(req.query.minutes)
    const iso = (ms: number): string => new Date(ms).toISOString()
    return { from: iso(t.from), minutes: t.minutes.map((m) => ({ at: iso(m.at), done: m.done, failed: m.failed })), pending: t.pending, running: t.running }
  })
}
