/* eslint-disable no-new -- a prom-client metric registers itself in the registry given to its constructor */
import type { FastifyPluginAsync } from 'fastify'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { SchedulerStats } from '../jobs/scheduler.js'
import { FINAL_STATUSES, JOB_STATUSES } from '../jobs/types.js'
import type { AsyncJobStore, FeedChange, NodeRow } from '../store/job-store.js'

/** What the metrics read: job counts and the change feed from the store, the nodes sharing the database, counters
 *  from the scheduler when there is one. */
export interface MetricsOptions {
  store: Pick<AsyncJobStore, 'counts' | 'changesAfter' | 'feedHead'>
  scheduler?: { stats?: SchedulerStats, childPids?: () => number[] }
  /** The nodes sharing the database (the store's nodes()); no node metrics when absent. */
  nodes?: () => Promise<NodeRow[]>
  /** Epoch ms before which job starts are not observed as queue waits (they belong to an earlier server); defaults to now. */
  since?: number
}

/** The registry /metrics serves, and what the HTTP layer reports into it. */
export interface Metrics {
  registry: Registry
  /** Reads the store once for a scrape: counts by status, the jobs changed since the last scrape, the nodes.
   *  Scrapes at once share one read. */
  update: () => Promise<void>
  /** Counts the error if it, or one of its causes, carries a SQLite code (SQLITE_BUSY, SQLITE_FULL, ...). */
  observeError: (err: unknown) => void
}

/** Buckets in seconds from a tenth of a second to a day, for both job duration and queue wait. */
const BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600]
/** Changes read per query while following the feed. */
const PAGE = 1000
/** Jobs remembered as observed finished, so that a job the feed gives again in its final state is counted once. */
const FINISHED_REMEMBERED = 10_000

/**
 * A registry of our own (so several apps in one test process do not collide) with Node's default metrics and
 * the job server's: jobs by status, queue depth, running workers, job duration and queue wait, worker boots,
 * lost workers, requeues, SQLite errors and the nodes sharing the database. `update()` reads the store once per scrape.
 */
export function createMetrics ({ store, scheduler, nodes, since = Date.now() }: MetricsOptions): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const stats = scheduler?.stats

  const jobs = new Gauge({ name: 'nonstop_jobs', help: 'Jobs in the database, by status', labelNames: ['status'], registers: [registry] })
  const queueDepth = new Gauge({ name: 'nonstop_queue_depth', help: 'Jobs waiting for a worker (status pending)', registers: [registry] })
  const running = new Gauge({
    name: 'nonstop_running_workers',
    help: 'Jobs being computed right now, each by its own worker process (status running)',
    registers: [registry]
  })
  if (scheduler?.childPids) {
    const childPids = scheduler.childPids
    new Gauge({
      name: 'nonstop_worker_processes',
      help: 'Worker processes this server forked that are alive, the warm spare included',
      registers: [registry],
      collect () { this.set(childPids().length) }
    })
  }
  const duration = new Histogram({
    name: 'nonstop_job_duration_seconds',
    help: 'Time from first start to the end of a job, by final status',
    labelNames: ['status'],
    buckets: BUCKETS,
    registers: [registry]
  })
  const queueWait = new Histogram({
    name: 'nonstop_job_queue_wait_seconds',
    help: 'Time a job waited in the queue before its first start',
    buckets: BUCKETS,
    registers: [registry]
  })

  // The change feed gives every change after a cursor once, in feed order, on SQLite and on PostgreSQL alike
  // (each change with the job's state as of the read), so following it from the last event id seen sees every
  // start and every end, whatever the writers' clocks. The starting point is taken now, not at the first scrape.
  let cursor: Promise<string> | string = store.feedHead()
  // Not yet awaited: a database down at start is retried at the next scrape, not an unhandled rejection.
  cursor.catch(() => {})
  /** Jobs whose start has been observed and whose end has not yet. */
  const started = new Set<number>()
  /** Jobs whose end has been observed (the newest FINISHED_REMEMBERED): on PostgreSQL the feed gives a job at its
   *  state as of the read, so its end can come with an earlier change of it and again with the change itself. */
  const finished = new Set<number>()
  const observe = (row: NonNullable<FeedChange['row']>): void => {
    if (row.started_at !== null && row.started_at >= since && !started.has(row.id) && !finished.has(row.id)) {
      queueWait.observe(Math.max(0, row.started_at - row.created_at) / 1000)
      started.add(row.id)
    }
    if (FINAL_STATUSES.includes(row.status) && !finished.has(row.id)) {
      started.delete(row.id)
      finished.add(row.id)
      if (finished.size > FINISHED_REMEMBERED) finished.delete(finished.values().next().value as number)
      if (row.started_at !== null && row.finished_at !== null) {
        duration.observe({ status: row.status }, Math.max(0, row.finished_at - row.started_at) / 1000)
      }
    }
  }
  const follow = async (): Promise<void> => {
    let from: string
    try {
      from = await cursor
    } catch {
      // The head could not be read at start: follow from now on.
      cursor = from = await store.feedHead()
    }
    for (;;) {
      const changes = await store.changesAfter(from, PAGE)
      for (const change of changes) {
        if (change.row) observe(change.row)
        else started.delete(change.deleted)
      }
      if (changes.length > 0) cursor = from = changes[changes.length - 1].eventId
      if (changes.length < PAGE) return
    }
  }

  const nodeCount = new Gauge({ name: 'nonstop_nodes', help: 'Nodes (servers) sharing the database, as the nodes table holds them', registers: [registry] })
  const nodeRunning = new Gauge({ name: 'nonstop_node_running_jobs', help: 'Jobs running on each node', labelNames: ['node'], registers: [registry] })
  const nodeSilence = new Gauge({
    name: 'nonstop_node_heartbeat_age_seconds',
    help: 'Time since each node\'s last heartbeat, by the database\'s clock',
    labelNames: ['node'],
    registers: [registry]
  })
  const readNodes = async (): Promise<void> => {
    if (!nodes) return
    const list = await nodes()
    nodeCount.set(list.length)
    // A node gone from the table goes from the metrics too.
    nodeRunning.reset()
    nodeSilence.reset()
    for (const node of list) {
      nodeRunning.set({ node: node.node_id }, node.running)
      nodeSilence.set({ node: node.node_id }, node.silent_ms / 1000)
    }
  }

  // Counters that mirror the scheduler's own: each scrape adds what it counted since the last one.
  const mirror = (name: string, help: string, read: (s: SchedulerStats) => number): void => {
    if (!stats) return
    let last = 0
    new Counter({
      name,
      help,
      registers: [registry],
      collect () {
        const now = read(stats)
        if (now > last) this.inc(now - last)
        last = now
      }
    })
  }
  mirror('nonstop_worker_forks_total', 'Worker processes forked (booted) by this server', (s) => s.forks)
  mirror('nonstop_worker_lost_total', 'Running jobs whose worker died or stopped beating (crashes)', (s) => s.lost)
  mirror('nonstop_jobs_requeued_total', 'Jobs put back to pending after losing their worker (retries)', (s) => s.requeued)
  mirror('nonstop_workers_killed_total', 'Workers killed because they did not stop when asked', (s) => s.killed)

  const sqliteErrors = new Counter({
    name: 'nonstop_sqlite_errors_total',
    help: 'Errors from SQLite seen while answering requests, by code',
    labelNames: ['code'],
    registers: [registry]
  })

  /** The read in progress: a scrape that comes meanwhile waits for it rather than follow the feed beside it. */
  let updating: Promise<void> | null = null
  return {
    registry,
    update (): Promise<void> {
      updating ??= (async () => {
        try {
          const counts = await store.counts()
          for (const status of JOB_STATUSES) jobs.set({ status }, counts[status])
          queueDepth.set(counts.pending)
          running.set(counts.running)
          await follow()
          await readNodes()
        } finally {
          updating = null
        }
      })()
      return updating
    },
    observeError (err: unknown): void {
      for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
        const code = (e as { code?: unknown }).code
        if (typeof code === 'string' && code.startsWith('SQLITE_')) {
          sqliteErrors.inc({ code })
          return
        }
      }
    }
  }
}

/** GET /metrics: the registry in Prometheus text format. */
export const metricsRoutes: FastifyPluginAsync<{ metrics: Metrics }> = async (app, { metrics }) => {
  app.get('/metrics', {
    schema: {
      summary: 'Prometheus metrics',
      description: 'Text exposition format: jobs by status, queue depth, running workers, job duration and queue wait, worker boots, crashes, retries, SQLite errors, the nodes sharing the database (running jobs, heartbeat age), and Node process metrics.',
      tags: ['ops'],
      produces: ['text/plain'],
      response: { 200: { type: 'string', description: 'Prometheus text format 0.0.4' } }
    }
  }, async (_req, reply) => {
    await metrics.update()
    const body = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(body)
  })
}
