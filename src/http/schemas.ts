import { Type } from 'typebox'
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

export const ListQuery = Type.Object({
  status: Type.Optional(Status('only jobs in this status')),
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  cursor: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'nextCursor of the previous page' }))
}, { additionalProperties: false })

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
