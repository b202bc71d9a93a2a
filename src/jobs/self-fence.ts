/**
 * A worker's self-fencing clock. The scheduler (of any node) may take a job over once its heartbeat is older than
 * the lease. A worker that cannot write (the database unreachable, or locked) keeps computing and retries with a
 * growing pause, but once it has gone `budgetMs` = lease − margin without one successful write it must stop and
 * exit without writing: by then another worker may be about to compute the same job, and at most one may.
 *
 * The margin, max(2 × heartbeat, lease / 5) (at most half the lease), covers the clock difference between the
 * worker's last successful write and the moment the database recorded it, the pause before the worker notices, and
 * the takeover's own delay. Times here are this process's monotonic clock: no other node's clock is involved.
 */

import { monotonicMs } from './clock.js'

/** Exit code of a worker that stopped computing because it could not write for nearly a lease. */
export const EXIT_SELF_FENCED = 4

/** First pause after a failed write, and the longest. */
const RETRY_FIRST_MS = 50
const RETRY_MAX_MS = 1000

/** Thrown (and caught by the worker) when the budget without a successful write is spent. */
export class SelfFenced extends Error {
  constructor (readonly silentMs: number, readonly budgetMs: number, readonly lastError: unknown) {
    super(`no successful database write for ${silentMs} ms (limit ${budgetMs} ms: the lease less a margin); stopping so that another worker can take the job over`)
    this.name = 'SelfFenced'
  }
}

/** How long a worker may go without a successful write: the lease less the margin. */
export function fenceBudgetMs (leaseMs: number, heartbeatMs: number): number {
  const margin = Math.min(Math.max(2 * heartbeatMs, leaseMs / 5), leaseMs / 2)
  return Math.max(1, Math.floor(leaseMs - margin))
}

export interface FenceClock {
  readonly budgetMs: number
  /** Failed writes since the last successful one. */
  readonly failures: number
  /** Ms left before the worker must stop (≤ 0: spent). */
  remaining (now?: number): number
  /** A write succeeded: the clock starts again. */
  succeeded (now?: number): void
  /** A write failed: the next attempt waits a growing pause. */
  failed (err: unknown, now?: number): void
  /** Whether the pause after the last failure is over. */
  mayTry (now?: number): boolean
  /** Throws SelfFenced when the budget is spent. Called once a write has failed: a worker whose writes succeed is
   *  never fenced by this clock, however long a unit took (its next write, fenced on the lease, tells it). */
  check (now?: number): void
  /** The SelfFenced error for now, with `cause` as the last failure when given. */
  fenced (cause?: unknown, now?: number): SelfFenced
}

/** A clock whose budget starts at `start` (when the worker learned the job was its own; now by `clock`, if not given). */
export function createFenceClock (budgetMs: number, start?: number, clock: () => number = monotonicMs): FenceClock {
  let lastOk = start ?? clock()
  let failures = 0
  let nextTry = 0
  let lastError: unknown
  return {
    budgetMs,
    get failures () { return failures },
    remaining: (now = clock()) => lastOk + budgetMs - now,
    succeeded (now = clock()) {
      lastOk = now
      failures = 0
      nextTry = 0
      lastError = undefined
    },
    failed (err, now = clock()) {
      failures++
      lastError = err
      nextTry = now + Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (failures - 1))
    },
    mayTry: (now = clock()) => now >= nextTry,
    check (now = clock()) {
      if (now - lastOk >= budgetMs) throw new SelfFenced(Math.round(now - lastOk), budgetMs, lastError)
    },
    fenced: (cause = lastError, now = clock()) => new SelfFenced(Math.round(now - lastOk), budgetMs, cause)
  }
}
