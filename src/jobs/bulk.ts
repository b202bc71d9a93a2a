import { setTimeout as sleep } from 'node:timers/promises'
import type { JobFilter } from './job-filter.js'
import type { AsyncJobStore } from '../store/job-store.js'
import type { BulkAction } from './store.js'

/** Jobs changed per transaction: short enough that a worker's heartbeat never waits long for the write lock. */
export const BULK_BATCH = 50
/** Skipped jobs listed by id in the answer; the rest are only counted. */
export const MAX_SKIPPED_LISTED = 100

/** What a bulk action did over every job it matched. */
export interface BulkOutcome {
  matched: number
  changed: number
  /** The first MAX_SKIPPED_LISTED jobs left as they were, and why. */
  skipped: Array<{ id: number, reason: string }>
  skippedTotal: number
  /** The server began to close before every matching job was visited: the figures are what was done. */
  interrupted: boolean
}

/** The least pause between two batches (ms). */
export const BULK_MIN_PAUSE_MS = 10

/**
 * Applies `action` to every job `filter` matches that exists when it starts (jobs created meanwhile, its own
 * retries included, have higher ids and are not visited), newest first, in transactions of `batch` jobs. Between
 * two batches it pauses at least as long as the batch held the write lock (and BULK_MIN_PAUSE_MS): back-to-back
 * transactions would leave a worker's heartbeat, polling for the lock in another process, waiting for seconds.
 * Every change goes through the jobs table, so the live stream reports each one. It stops between batches once
 * `signal` is aborted (the server is closing), with what it did so far.
 */
export async function runBulk (store: Pick<AsyncJobStore, 'bulkBatch' | 'resolveCreated'>, action: BulkAction, filter: JobFilter,
  options: { maxPending: number, batch?: number, signal?: AbortSignal, onBatch?: (out: BulkOutcome) => void }): Promise<BulkOutcome> {
  const out: BulkOutcome = { matched: 0, changed: 0, skipped: [], skippedTotal: 0, interrupted: false }
  const resolved = await store.resolveCreated(filter)
  let cursor: number | null = Number.MAX_SAFE_INTEGER
  while (cursor !== null) {
    if (options.signal?.aborted) {
      out.interrupted = true
      break
    }
    const started = performance.now()
    const batch = await store.bulkBatch(action, resolved, cursor, options.batch ?? BULK_BATCH, options.maxPending)
    const held = performance.now() - started
    out.matched += batch.matched
    out.changed += batch.changed
    out.skippedTotal += batch.skipped.length
    for (const skipped of batch.skipped) if (out.skipped.length < MAX_SKIPPED_LISTED) out.skipped.push(skipped)
    cursor = batch.cursor
    options.onBatch?.(out)
    if (cursor !== null) await sleep(Math.max(BULK_MIN_PAUSE_MS, held))
  }
  return out
}
