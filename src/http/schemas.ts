import { Type } from 'typebox'
import type { JobEventDetail } from '../jobs/history.js'
import { JOB_STATUSES, type JobStatus } from '../jobs/types.js'

// Nullable fields as a type array rather than anyOf: the same JSON, but Fastify's serializer takes its fast path
// (a 50-job page serializes about 4x faster).
const NullableString = (options: { format?: string } = {}) => Type.Unsafe<string | null>({ type: ['string', 'null'], ...options })
const NullableInteger = () => Type.Unsafe<number | null>({ type: ['integer', 'null'] })
const NullableNumber = () => Type.Unsafe<number | null>({ type: ['number', 'null'] })
const Status = (description?: string) => Type.Unsafe<JobStatus>({ type: 'string', enum: [...JOB_STATUSES], description })
const DateTime = Type.String({ format: 'date-time' })

/** Fastify's error body, kept as it is so clients can rely on it. */
export const ErrorReply = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
  code: Type.Optional(Type.String())
}, { description: 'Fastify error: status code, reason phrase, and a message naming what was wrong' })

/** Fields of a submission every job type shares. */
export const SubmitCommon = {
  name: Type.Optional(Type.String({ maxLength: 200, description: 'free text shown in the dashboard' })),
  priority: Type.Optional(Type.Integer({ minimum: -1000000, maximum: 1000000, description: 'higher runs first; default 0' })),
  timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 31536000, description: 'run-time limit; the job fails with "timeout" past it' }))
}

/**
 * The envelope of POST /api/jobs, validated before the type is known: `{type, params, ...common}`, or the flat
 * lyapunov shorthand `{n, steps, seed?, ...common}` (whose fields its type's schema then checks). Unknown fields
 * are refused, not dropped.
 */
export const SubmitEnvelope = Type.Object({
  type: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9-]{0,39}$', description: 'job type (GET /api/job-types)' })),
  params: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'parameters, as the type\'s schema says' })),
  n: Type.Optional(Type.Unknown()),
  steps: Type.Optional(Type.Unknown()),
  seed: Type.Optional(Type.Unknown()),
  ...SubmitCommon
}, { additionalProperties: false })

/** The submission once validated against its type. */
export interface Submission {
  type: string
  params: Record<string, unknown>
  name?: string
  priority?: number
  timeoutSeconds?: number
}

/** GET /api/job-types. */
export const JobTypeList = Type.Object({
  types: Type.Array(Type.Object({
    name: Type.String(),
    title: Type.String(),
    description: Type.String(),
    params: Type.Unsafe<Record<string, unknown>>({ type: 'object', additionalProperties: true, description: 'JSON Schema of the params' }),
    builtIn: Type.Boolean(),
    error: Type.Optional(Type.String({ description: 'why this type cannot be used (its module is broken)' }))
  }))
}, { description: 'the job types this server runs' })

export const SubmitHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'repeat a submit safely: the same key returns the same job' }))
})

export const IdParams = Type.Object({
  id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'job id' })
})

/**
 * The conditions of a filter (list, counts, bulk). Statuses are checked by the route (parseFilter) so an unknown
 * one gets a message naming it and the statuses there are.
 */
const FilterFields = {
  status: Type.Optional(Type.Array(Type.String({ description: `one of ${JOB_STATUSES.join(', ')}` }), { maxItems: 5, description: 'any of these statuses (repeat the parameter for several)' })),
  type: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9-]{0,39}$', description: 'only jobs of this type' })),
  name: Type.Optional(Type.String({ maxLength: 200, description: 'the name contains this text (case-insensitive)' })),
  createdFrom: Type.Optional(Type.String({ format: 'date-time', description: 'created at or after this time (ISO 8601 with a time zone)' })),
  createdTo: Type.Optional(Type.String({ format: 'date-time', description: 'created before this time (ISO 8601 with a time zone)' }))
}

/** A filter as a query string (GET /api/jobs, GET /api/jobs/counts). */
export const FilterQuery = Type.Object(FilterFields, { additionalProperties: false })

/** A filter in a JSON body (POST /api/jobs/bulk). */
export const FilterBody = Type.Object(FilterFields, { additionalProperties: false, description: 'which jobs: all conditions given must hold; {} is every job' })

/** A filter as the routes receive it. */
export interface FilterInput { status?: string[], type?: string, name?: string, createdFrom?: string, createdTo?: string }

export const ListQuery = Type.Object({
  ...FilterFields,
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  cursor: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'nextCursor of the previous page' }))
}, { additionalProperties: false })

const StatusCounts = Type.Object(Object.fromEntries(JOB_STATUSES.map((s) => [s, Type.Integer()])) as Record<JobStatus, ReturnType<typeof Type.Integer>>)

/** GET /api/jobs/counts. */
export const CountsReply = Type.Object({
  counts: StatusCounts,
  total: Type.Integer({ description: 'jobs matching the whole filter' })
}, { description: 'jobs in each status under the filter\'s other conditions, and how many match it all' })

/** POST /api/jobs/bulk. */
export const BulkBody = Type.Object({
  action: Type.Unsafe<'cancel' | 'retry' | 'delete'>({ type: 'string', enum: ['cancel', 'retry', 'delete'], description: 'cancel, retry or delete every job the filter matches' }),
  filter: FilterBody
}, { additionalProperties: false })

export const BulkReply = Type.Object({
  matched: Type.Integer({ description: 'jobs the filter matched' }),
  changed: Type.Integer({ description: 'jobs canceled (or asked to stop), retried or deleted' }),
  skipped: Type.Array(Type.Object({ id: Type.Integer(), reason: Type.String() }), { description: 'the first 100 jobs left as they were, with why' }),
  skippedTotal: Type.Integer({ description: 'all jobs left as they were' }),
  interrupted: Type.Boolean({ description: 'true when the server began to close before every matching job was visited: the figures are what was done' })
})

/** GET /api/jobs/:id/events. */
export const JobEventList = Type.Object({
  jobId: Type.Integer(),
  events: Type.Array(Type.Object({
    id: Type.Integer(),
    at: DateTime,
    kind: Type.String({ description: 'submitted, claimed, started, checkpoint, stop-requested, released, lost, failed, canceled or done' }),
    attempt: Type.Integer(),
    step: Type.Integer(),
    detail: Type.Unsafe<JobEventDetail>({ type: 'object', additionalProperties: true, description: 'reason, pid, resumedFromStep, resumesFromStep, request, by, elapsedMs, gflops' }),
    message: Type.String({ description: 'the event in one sentence' })
  }))
}, { description: 'the job\'s history, oldest first: its submit and at most its latest 200 events' })

/** GET /api/jobs/:id/log. */
export const JobLogReply = Type.Object({
  jobId: Type.Integer(),
  logFile: Type.Boolean({ description: 'whether LOG_FILE is set (without it the lines go to stdout and cannot be read back)' }),
  bytesRead: Type.Integer({ description: 'bytes read from the end of the log file (at most 1 MiB)' }),
  lines: Type.Array(Type.Object({
    time: DateTime,
    level: Type.String(),
    msg: Type.String(),
    fields: Type.String({ description: 'the line\'s other fields as JSON (event, step, reason, worker…), at most 1000 characters' })
  }), { description: 'oldest first, at most 200' })
})

/** GET /api/stats/throughput. */
export const ThroughputQuery = Type.Object({
  minutes: Type.Integer({ minimum: 1, maximum: 1440, default: 60 })
}, { additionalProperties: false })

export const ThroughputReply = Type.Object({
  from: DateTime,
  minutes: Type.Array(Type.Object({ at: DateTime, done: Type.Integer(), failed: Type.Integer() })),
  pending: Type.Integer({ description: 'queue depth now' }),
  running: Type.Integer()
})

export const JobSchema = Type.Object({
  id: Type.Integer(),
  type: Type.String(),
  name: NullableString(),
  status: Status(),
  progress: Type.Number({ minimum: 0, maximum: 100 }),
  step: Type.Integer(),
  steps: Type.Integer(),
  params: Type.Unsafe<Record<string, unknown>>({ type: 'object', additionalProperties: true, description: 'the parameters, as validated by the type\'s schema' }),
  priority: Type.Integer(),
  result: Type.Unsafe<Record<string, unknown> | null>({
    type: ['object', 'null'],
    additionalProperties: true,
    description: 'what the type\'s result() returned, once done (lyapunov: lyapunov, theory, trace, elapsedMs, gflops)'
  }),
  error: NullableString(),
  attempts: Type.Integer(),
  pid: NullableInteger(),
  timeoutSeconds: NullableNumber(),
  retryOf: NullableInteger(),
  cancelRequested: Type.Boolean(),
  createdAt: DateTime,
  startedAt: NullableString({ format: 'date-time' }),
  finishedAt: NullableString({ format: 'date-time' }),
  updatedAt: DateTime,
  heartbeatAt: NullableString({ format: 'date-time' }),
  version: Type.Integer({ description: 'grows with every change of the job; the id of its events in /api/events' })
}, { description: 'a job: its parameters, where it is, and its result' })

export const JobList = Type.Object({
  jobs: Type.Array(JobSchema),
  nextCursor: NullableInteger()
})
