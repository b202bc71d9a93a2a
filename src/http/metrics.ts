/* eslint-disable no-new -- a prom-client metric registers itself in the registry given to its constructor */
import type { FastifyPluginAsync } from 'fastify'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { SchedulerStats } from '../jobs/scheduler.js'
import type { JobStore } from '../jobs/store.js'
import { FINAL_STATUSES, JOB_STATUSES } from '../jobs/types.js'

/** What the metrics read: job counts and changes from the store, counters from the scheduler when there is one. */
export interface MetricsOptions {
  store: Pick<JobStore, 'counts' | 'changedAfter' | 'latestSeq'>
  scheduler?: { stats?: SchedulerStats, childPids?: () => number[] }
  /** Epoch ms before which job starts are not observed as queue waits (they belong to an earlier server); defaults to now. */
  since?: number
}

/** The registry /metrics serves, and what the HTTP layer reports into it. */
export interface Metrics {
  registry: Registry
  /** Reads the store once for a scrape: counts by status, and the jobs changed since the last scrape. */
  update: () => void
  /** Counts the error if it, or one of its causes, carries a SQLite code (SQLITE_BUSY, SQLITE_FULL, ...). */
  observeError: (err: unknown) => void
}

/** Buckets in seconds from a tenth of a second to a day, for both job duration and queue wait. */
const BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600]
/** Rows read per query while following changes. */
const PAGE = 1000

/**
 * A registry of our own (so several apps in one test process do not collide) with Node's default metrics and
 * the job server's: jobs by status, queue depth, running workers, job duration and queue wait, worker boots,
 * lost workers, requeues and SQLite errors. `update()` reads the store once per scrape.
 */
export function createMetrics ({ store, scheduler, since = Date.now() }: MetricsOptions): Metrics {
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

  // Every write to a job takes the next change number in commit order (migrations/002), so following
  // "changed after the last number seen" sees every start and every end once, whatever the writers' clocks.
  let cursor = store.latestSeq()
  /** Jobs whose start has been observed and whose end has not yet. */
  const started = new Set<number>()
  const follow = (): void => {
    for (;;) {
      const rows = store.changedAfter(cursor, PAGE)
      for (const row of rows) {
        cursor = row.seq
        if (row.started_at !== null && row.started_at >= since && !started.has(row.id)) {
          queueWait.observe(Math.max(0, row.started_at - row.created_at) / 1000)
          started.add(row.id)
        }
        if (FINAL_STATUSES.includes(row.status)) {
          started.delete(row.id)
          if (row.started_at !== null && row.finished_at !== null) {
            duration.observe({ status: row.status }, Math.max(0, row.finished_at - row.started_at) / 1000)
          }
        }
      }
      if (rows.length < PAGE) return
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

  return {
    registry,
    update (): void {
      const counts = store.counts()
      for (const status of JOB_STATUSES) jobs.set({ status }, counts[status])
      queueDepth.set(counts.pending)
      running.set(counts.running)
      follow()
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
      description: 'Text exposition format: jobs by status, queue depth, running workers, job duration and queue wait, worker boots, crashes, retries, SQLite errors, and Node process metrics.',
      tags: ['ops'],
      produces: ['text/plain'],
      response: { 200: { type: 'string', description: 'Prometheus text format 0.0.4' } }
    }
  }, async (_req, reply) => {
    metrics.update()
    const body = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(body)
  })
}
