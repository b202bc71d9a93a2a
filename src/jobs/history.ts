/**
 * A job's history (migrations/006): the kinds of event, their details, and the one sentence each is told in.
 * The store writes events in the same transactions as the changes they describe; this module only reads them.
 */

/** What happened to a job. */
export type JobEventKind = 'submitted' | 'claimed' | 'started' | 'checkpoint' | 'stop-requested' | 'released' |
  'lost' | 'failed' | 'canceled' | 'done'

/** Who asked a worker to stop. */
export type StopRequester = 'api' | 'bulk' | 'scheduler' | 'shutdown'

/** Details an event may carry (JSON in job_events.detail). */
export interface JobEventDetail {
  /** submitted: the job this one retries. */
  retryOf?: number
  /** claimed, started: the worker's pid. */
  pid?: number | null
  /** started: the checkpoint's step it resumed from; null from scratch. */
  resumedFromStep?: number | null
  /** released, lost: the step the next attempt resumes from; null when there is no next attempt. */
  resumesFromStep?: number | null
  /** stop-requested: what was asked (cancel, timeout, release). */
  request?: string
  /** stop-requested, canceled: who asked. */
  by?: StopRequester
  /** released, lost, failed: why. */
  reason?: string
  /** done: compute time and speed, where the result reports them. */
  elapsedMs?: number
  gflops?: number
}

/** A row of job_events, as stored. */
export interface JobEventRow {
  id: number
  job_id: number
  at: number
  kind: JobEventKind
  attempt: number
  lease: number
  step: number
  detail: string | null
}

/** An event as the API shows it. */
export interface JobEvent {
  id: number
  at: string
  kind: JobEventKind
  attempt: number
  step: number
  detail: JobEventDetail
  /** The event in one sentence, e.g. "attempt 1 lost at step 37 of 60 — worker killed by SIGKILL; resumes from step 36". */
  message: string
}

const seconds = (ms: number): string => ms < 10_000
  ? `${(ms / 1000).toFixed(1)} s`
  : ms < 3_600_000
    ? `${Math.floor(ms / 60_000) > 0 ? `${Math.floor(ms / 60_000)} m ` : ''}${Math.round((ms % 60_000) / 1000)} s`
    : `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} m`

const BY: Record<StopRequester, string> = { api: 'the API', bulk: 'a bulk action', scheduler: 'the scheduler', shutdown: 'a server shutdown' }

/** The sentence of one event; `steps` is the job's number of steps. */
export function describeEvent (kind: JobEventKind, attempt: number, step: number, steps: number, d: JobEventDetail): string {
  const at = `at step ${step} of ${steps}`
  const resumes = (k: number | null | undefined): string => (k === null || k === undefined ? '' : `; resumes from step ${k}`)
  switch (kind) {
    case 'submitted': return d.retryOf ? `submitted as a retry of job ${d.retryOf}` : 'submitted'
    case 'claimed': return `attempt ${attempt} claimed by ${d.pid ? `worker pid ${d.pid}` : 'a worker'}`
    case 'started': return d.resumedFromStep === null || d.resumedFromStep === undefined
      ? `attempt ${attempt} started from scratch${d.pid ? ` in worker pid ${d.pid}` : ''}`
      : `attempt ${attempt} resumed from step ${d.resumedFromStep}${d.pid ? ` in worker pid ${d.pid}` : ''}`
    case 'checkpoint': return `attempt ${attempt} checkpointed ${at}`
    case 'stop-requested': {
      const what = d.request === 'cancel' ? 'cancel' : d.request === 'timeout' ? 'stop (time limit reached)' : 'release'
      return `${what} requested by ${BY[d.by as StopRequester] ?? d.by ?? 'someone'}`
    }
    case 'released': return `attempt ${attempt} released ${at}${d.reason ? ` (${d.reason})` : ''}${resumes(d.resumesFromStep)}`
    case 'lost': return `attempt ${attempt} lost ${at} — ${d.reason ?? 'worker gone'}${d.resumesFromStep === null ? '; no attempt left' : resumes(d.resumesFromStep)}`
    case 'failed': return `${attempt > 0 ? `attempt ${attempt} ` : ''}failed ${at} — ${d.reason ?? 'unknown reason'}`
    case 'canceled': return attempt > 0 ? `canceled ${at}${d.by ? ` by ${BY[d.by]}` : ''}` : `canceled before it ran${d.by ? ` by ${BY[d.by]}` : ''}`
    case 'done': return `done${typeof d.elapsedMs === 'number' ? ` in ${seconds(d.elapsedMs)}` : ''}${typeof d.gflops === 'number' ? ` at ${d.gflops.toFixed(2)} GF/s` : ''}`
  }
}

/** The one conversion from a stored event to the API's. */
export function toJobEvent (row: JobEventRow, steps: number): JobEvent {
  const detail = row.detail === null ? {} : JSON.parse(row.detail) as JobEventDetail
  return {
    id: row.id,
    at: new Date(row.at).toISOString(),
    kind: row.kind,
    attempt: row.attempt,
    step: row.step,
    detail,
    message: describeEvent(row.kind, row.attempt, row.step, steps, detail)
  }
}
