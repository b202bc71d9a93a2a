import type { JobFilter } from './job-filter.js'
import type { BulkAction, JobStore } from './store.js'

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
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/**
 * Applies `action` to every job `filter` matches that exists when it starts (jobs created meanwhile, its own
 * retries included, have higher ids and are not visited), newest first, in transactions of `batch` jobs with a
 * turn of the event loop between them, so requests and workers are served meanwhile. Every change goes through
 * the jobs table, so the live stream reports each one.
 */
export async function runBulk (store: Pick<JobStore, 'bulkBatch'>, action: BulkAction, filter: JobFilter,
  options: { maxPending: number, batch?: number }): Promise<BulkOutcome> {
  const out: BulkOutcome = { matched: 0, changed: 0, skipped: [], skippedTotal: 0 }
  let cursor: number | null = Number.MAX_SAFE_INTEGER
  while (cursor !== null) {
    const batch = store.bulkBatch(action, filter, cursor, options.batch ?? BULK_BATCH, options.maxPending)
    out.matched += batch.matched
    out.changed += batch.changed
    out.skippedTotal += batch.skipped.length
    for (const skipped of batch.skipped) if (out.skipped.length < MAX_SKIPPED_LISTED) out.skipped.push(skipped)
    cursor = batch.cursor
    if (cursor !== null) await turn()
  }
  return out
}
