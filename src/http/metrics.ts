/* eslint-disable no-new -- a prom-client metric registers itself in the registry given to its constructor */
import type { FastifyPluginAsync } from 'fastify'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { SchedulerStats } from '../jobs/scheduler.js'
import type { JobStore, JobTimes } from '../jobs/store.js'
import { JOB_STATUSES } from '../jobs/types.js'

/** What the metrics read: job counts and times from the store, counters from the scheduler when there is one. */
export interface MetricsOptions {
  store: Pick<JobStore, 'counts' | 'finishedSince' | 'startedSince'>
  scheduler?: { stats?: SchedulerStats, childPids?: () => number[] }
  /** Epoch ms before which finished or started jobs are not observed in the histograms; defaults to now. */
  since?: number
}

/** The registry /metrics serves, and the one thing the HTTP layer reports into it. */
export interface Metrics {
  registry: Registry
  /** Counts the error if it, or one of its causes, carries a SQLite code (SQLITE_BUSY, SQLITE_FULL, ...). */
  observeError: (err: unknown) => void
}

/** Buckets in seconds from a tenth of a second to a day, for both job duration and queue wait. */
const BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600]

// Rows are written by several processes with their own clocks, so a finish can be committed with a time a little
// older than one already seen: look back this far and skip the ids already observed.
const LOOKBACK_MS = 10_000

/** Follows the rows whose `field` moved past a cursor, each row observed once. */
function follower (read: (since: number) => JobTimes[], field: 'finished_at' | 'started_at', since: number) {
  let cursor = since
  const seen = new Map<number, number>()
  return (observe: (row: JobTimes) => void): void => {
    for (;;) {
      const rows = read(cursor - LOOKBACK_MS)
      let fresh = 0
      for (const row of rows) {
        const at = row[field] as number
        if (seen.has(row.id)) continue
        seen.set(row.id, at)
        fresh++
        if (at > cursor) cursor = at
        observe(row)
      }
      if (fresh === 0 || rows.length < 1000) break
    }
    for (const [id, at] of seen) if (at < cursor - LOOKBACK_MS) seen.delete(id)
  }
}

/**
 * A registry of our own (so several apps in one test process do not collide) with Node's default metrics and
 * the job server's: jobs by status, queue depth, running workers, job duration and queue wait, worker boots,
 * lost workers, requeues and SQLite errors. Everything is read from the store and the scheduler at scrape time.
 */
export function createMetrics ({ store, scheduler, since = Date.now() }: MetricsOptions): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const stats = scheduler?.stats

  new Gauge({
    name: 'nonstop_jobs',
    help: 'Jobs in the database, by status',
    labelNames: ['status'],
    registers: [registry],
    collect () {
      const counts = store.counts()
      for (const status of JOB_STATUSES) this.set({ status }, counts[status])
    }
  })
  new Gauge({
    name: 'nonstop_queue_depth',
    help: 'Jobs waiting for a worker (status pending)',
    registers: [registry],
    collect () { this.set(store.counts().pending) }
  })
  new Gauge({
    name: 'nonstop_running_workers',
    help: 'Jobs being computed right now, each by its own worker process (status running)',
    registers: [registry],
    collect () { this.set(store.counts().running) }
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

  const finished = follower((from) => store.finishedSince(from), 'finished_at', since)
  new Histogram({
    name: 'nonstop_job_duration_seconds',
    help: 'Time from first start to the end of a job, by final status',
    labelNames: ['status'],
    buckets: BUCKETS,
    registers: [registry],
    collect () {
      finished((row) => {
        if (row.started_at === null || row.finished_at === null) return
        this.observe({ status: row.status }, Math.max(0, row.finished_at - row.started_at) / 1000)
      })
    }
  })
  const started = follower((from) => store.startedSince(from), 'started_at', since)
  new Histogram({
    name: 'nonstop_job_queue_wait_seconds',
    help: 'Time a job waited in the queue before its first start',
    buckets: BUCKETS,
    registers: [registry],
    collect () {
      started((row) => {
        if (row.started_at !== null) this.observe(Math.max(0, row.started_at - row.created_at) / 1000)
      })
    }
  })

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
    const body = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(body)
  })
}
