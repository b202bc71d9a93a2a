/**
 * The synchronous SQLite job store (src/jobs/store.ts, where all its SQL stays) seen through the asynchronous
 * interface. Every call runs the synchronous method and wraps its result (or its exception) in a promise.
 *
 * SQLite has no clock shared between nodes, and one server per database file: ages are measured with the
 * `clock` given here (the server's), as the scheduler does today. Event ids are the change numbers of
 * migrations/004 as decimal strings.
 */
import type { Db } from '../db.js'
import { createJobStore, type JobStore, type StoreOptions } from '../jobs/store.js'
import { createMatrixStore, type MatrixStore } from '../matrices/store.js'
import { type AsyncJobStore, type FeedChange, type LostOutcome, MAX_RESULT_MATRICES, type RunningJob } from './job-store.js'
import { type AsyncMatrixStore, asyncSqliteMatrixStore } from './matrix-store.js'
import { createSqliteNodes, type SqliteNodes } from './sqlite-nodes.js'

/** A change number from an event id this store gave, or undefined for anything else. */
function parseEventId (eventId: string): number | undefined {
  if (!/^(0|[1-9]\d{0,15})$/.test(eventId)) return undefined
  const n = Number(eventId)
  return Number.isSafeInteger(n) ? n : undefined
}

/** Wraps an existing synchronous store; `clock` (epoch ms) must be the one that store writes with; `matrices`, on
 *  the same database, stores what a result built by completeWith() stores. */
export function asyncSqliteStore (store: JobStore, clock: () => number = Date.now, matrices?: Pick<MatrixStore, 'insertOwned'>, nodes?: SqliteNodes): AsyncJobStore {
  const nodeTable = (): SqliteNodes => {
    if (!nodes) throw new Error('this store was made without its database\'s nodes table')
    return nodes
  }
  const run = async <T>(f: () => T): Promise<T> => f()
  const ageOf = (now: number, at: number | null): number | null => (at === null ? null : Math.max(0, now - at))
  const after = (eventId: string | null): number => {
    if (eventId === null) return 0
    const n = parseEventId(eventId)
    if (n === undefined) throw new TypeError(`not an event id of this store: ${JSON.stringify(eventId)}`)
    return n
  }
  return {
    kind: 'sqlite',
    submit: (job, maxPending, options) => run(() => store.submit(job, maxPending, options)),
    get: (id) => run(() => store.get(id)),
    list: (options) => run(() => store.list(options)),
    counts: (filter) => run(() => store.counts(filter)),
    events: (id) => run(() => store.events(id)),
    resolveCreated: (filter) => run(() => store.resolveCreated(filter)),
    // Cursor 0 means from the newest (the interface's contract); the synchronous store reads it as "below id 0".
    bulkBatch: (action, filter, cursor, batch, maxPending) => run(() =>
      store.bulkBatch(action, filter, cursor === 0 ? Number.MAX_SAFE_INTEGER : cursor, batch, maxPending)),
    throughput: (minutes) => run(() => store.throughput(minutes)),
    cancel: (id) => run(() => store.cancel(id)),
    remove: (id) => run(() => store.remove(id)),
    retry: (id, maxPending) => run(() => store.retry(id, maxPending)),

    changesAfter: (eventId, limit = 500) => run(() => store.changesAfter(after(eventId), limit).map((c): FeedChange =>
      c.row ? { eventId: String(c.seq), row: c.row } : { eventId: String(c.seq), deleted: c.deleted })),
    feedHead: () => run(() => String(store.latestSeq())),
    canResume: (eventId, maxReplay) => run(() => {
      const last = parseEventId(eventId)
      if (last === undefined) return false
      const latest = store.latestSeq()
      return last <= latest && last >= store.resumableAfter() && store.countChanges(last, latest, maxReplay) <= maxReplay
    }),

    // The synchronous claim returns its row through RETURNING, which shows seq as it was before the change-counter
    // trigger ran: read the row back for its version, as submit does.
    claimNext: (worker, pid, node, leaseMs) => run(() => {
      const row = store.claimNext(worker, pid, node, leaseMs)
      return row && (store.get(row.id) ?? row)
    }),
    running: () => run(() => store.running()),
    runningWithAges: () => run(() => {
      const now = clock()
      return store.running().map((row): RunningJob => ({
        row,
        silentMs: ageOf(now, row.heartbeat_at),
        runMs: ageOf(now, row.started_at),
        stopWaitMs: row.stop_request === null ? null : ageOf(now, row.stop_requested_at)
      }))
    }),
    hasPending: () => run(() => store.hasPending()),
    requestStop: (id, request, by) => run(() => store.requestStop(id, request, by)),
    settleStop: (attempt, request, why) => run(() => store.settleStop(attempt, request, why)),
    markLost: (attempt, reason, maxAttempts, ifSilentForMs) => run((): LostOutcome => {
      if (ifSilentForMs !== undefined) {
        // One server per SQLite file: a heartbeat written after this check is fenced out by the requeue anyway.
        const row = store.get(attempt.id)
        if (row && row.status === 'running' && row.lease === attempt.lease && row.worker === attempt.worker &&
          row.heartbeat_at !== null && clock() - row.heartbeat_at <= ifSilentForMs) return 'alive'
      }
      return store.markLost(attempt, reason, maxAttempts)
    }),
    giveBack: (attempt, reason) => run(() => store.giveBack(attempt, reason)),
    checkpointInfo: (id) => run(() => store.checkpointInfo(id)),

    assigned: (worker) => run(() => store.assigned(worker)),
    loadCheckpoint: (id) => run(() => store.loadCheckpoint(id)),
    begin: (attempt, progress) => run(() => store.begin(attempt, progress)),
    beat: (attempt, progress) => run(() => store.beat(attempt, progress)),
    saveCheckpoint: (attempt, checkpoint, progress) => run(() => store.saveCheckpoint(attempt, checkpoint, progress)),
    complete: (attempt, result) => run(() => store.complete(attempt, result)),
    completeWith: (attempt, build) => run(() => {
      let value: object = {}
      let stored = 0
      // The synchronous store runs the function inside its transaction, once the attempt is known to hold the job.
      const done = store.complete(attempt, () => {
        value = build({
          storeMatrix: (m) => {
            if (!matrices) throw new Error('this store was made without a matrix store')
            if (++stored > MAX_RESULT_MATRICES) throw new Error(`a result stores at most ${MAX_RESULT_MATRICES} matrices`)
            return matrices.insertOwned(attempt.id, m)
          }
        })
        return value
      })
      return done.ok ? { ok: true as const, value } : { ok: false as const }
    }),
    fail: (attempt, error) => run(() => store.fail(attempt, error)),
    stopped: (attempt, request) => run(() => store.stopped(attempt, request)),

    purgeFinishedBefore: (before, batch) => run(() => store.purgeFinishedBefore(before, batch)),
    // The change log of migrations/004 keeps one entry per job (and per tombstone): nothing to prune.
    pruneFeed: async () => 0,
    claimPeriodic: (name, intervalMs) => run(() => nodeTable().claimPeriodic(name, intervalMs)),

    registerNode: (node) => run(() => nodeTable().register(node)),
    beatNode: (nodeId, pid) => run(() => nodeTable().beat(nodeId, pid)),
    nodes: () => run(() => nodeTable().list()),
    leaveNode: (nodeId, pid) => run(() => nodeTable().leave(nodeId, pid)),
    forgetNodes: (silentForMs) => run(() => nodeTable().forget(silentForMs)),
    close: async () => {}
  }
}

/** An async store over an open, migrated SQLite database (a new synchronous store on it). */
export function createSqliteJobStore (db: Db, clock: () => number = Date.now): AsyncJobStore {
  return createSqliteStores(db, clock).jobs
}

/**
 * The job and matrix stores over an open, migrated SQLite database, as the server and its workers open them: one
 * matrix store serves both (the job store writes a job's result matrices through it).
 */
export function createSqliteStores (db: Db, clock: () => number = Date.now, options: StoreOptions = {}): { jobs: AsyncJobStore, matrices: AsyncMatrixStore } {
  const matrices = createMatrixStore(db, clock, options)
  return {
    jobs: asyncSqliteStore(createJobStore(db, clock, options), clock, matrices, createSqliteNodes(db, clock, options)),
    matrices: asyncSqliteMatrixStore(matrices)
  }
}
