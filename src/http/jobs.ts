import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifySchema } from 'fastify'
import { createAjv } from '../ajv.js'
import type { Config } from '../config.js'
import type { JobTypeCatalog } from '../job-types/catalog.js'
import { coerceError } from '../errors.js'
import { toJob } from '../jobs/store.js'
import type { AsyncJobStore } from '../store/job-store.js'
import type { AsyncMatrixStore } from '../store/matrix-store.js'
import { toJobEvent } from '../jobs/history.js'
import { runBulk } from '../jobs/bulk.js'
import { readJobLogLines } from '../log-tail.js'
import { parseFilter } from './filter.js'
import { BulkBody, BulkReply, CountsReply, ErrorReply, FilterQuery, IdParams, JobEventList, JobList, JobLogReply, JobSchema, ListQuery, type Submission, SubmitHeaders } from './schemas.js'
import { checkSubmission, createSubmitValidator, ShapeReadError, submitDocSchema } from './submit.js'

/** What the job routes need. */
/** A bulk action in progress logs what it has done at most this often (ms). */
const BULK_PROGRESS_LOG_MS = 5000
/** Reads of the log file at once; a further request is answered 429 (each read is up to 1 MiB). */
const LOG_READS_AT_ONCE = 2

export interface JobRoutesOptions {
  store: AsyncJobStore
  scheduler: { wake (): void }
  config: Pick<Config, 'maxPending' | 'defaultTimeoutSeconds'> & Partial<Pick<Config, 'maxMatrixBytes' | 'logFile'>>
  jobTypes: JobTypeCatalog
  /** Shapes of stored matrices, for the checks of types that take matrix ids. */
  matrices?: Pick<AsyncMatrixStore, 'shape'>
}

/** A 400 in Fastify's error shape, for what a type's own checks refuse. */
function badRequest (message: string): Error {
  return Object.assign(new Error(message), { statusCode: 400 })
}

const errors = { 400: ErrorReply, 404: ErrorReply, 409: ErrorReply }

/** /api/jobs: submit, list, read, cancel, retry, delete. */
export const jobRoutes: FastifyPluginAsync<JobRoutesOptions> = async (instance, { store, scheduler, config, jobTypes, matrices }) => {
  const app = instance.withTypeProvider<TypeBoxTypeProvider>()
  const submitValidator = createSubmitValidator(jobTypes)
  const headersAjv = createAjv({ coerceTypes: true })

  app.post('/api/jobs', {
    schema: {
      summary: 'Submit a job',
      description: 'Inserts a pending job; the scheduler starts it when a worker is free. A repeated Idempotency-Key returns the job it created (200), or 409 if the request differs from the one that created it.',
      tags: ['jobs'],
      body: submitDocSchema(jobTypes),
      headers: SubmitHeaders,
      response: { 200: JobSchema, 201: JobSchema, 400: ErrorReply, 409: ErrorReply, 429: ErrorReply }
    } as FastifySchema,
    // The body's schema depends on its `type`: the submit validator picks the type's compiled schema.
    validatorCompiler: ({ schema, httpPart }) => httpPart === 'body' ? submitValidator : headersAjv.compile(schema)
  }, async (req, reply) => {
    const body = req.body as Submission
    const type = jobTypes.get(body.type)?.definition
    if (!type) throw badRequest(`body/type "${body.type}" is not a usable job type`)
    // The type's own server-side hooks: complete the params, check them further, count the units.
    let params = body.params
    // A seed the client left out is drawn here; a repeated Idempotency-Key then matches whatever seed was drawn.
    const anySeed = (body.params as { seed?: unknown }).seed === undefined
    let steps: number
    try {
      params = type.prepare ? type.prepare(params) : params
      const refused = await checkSubmission(type, params, matrices, config.maxMatrixBytes)
      if (refused) throw badRequest(`body/params ${refused}`)
      steps = type.steps ? type.steps(params) : 1
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 400) throw err
      if (err instanceof ShapeReadError) throw err.cause
      req.log.error({ err, type: body.type }, 'a job type\'s prepare/check/steps threw')
      throw badRequest(`job type "${body.type}" refused these params: ${coerceError(err).message}`)
    }
    if (!Number.isSafeInteger(steps) || steps < 1) throw badRequest(`job type "${body.type}" counts ${steps} steps for these params; expected an integer ≥ 1`)
    const timeoutSeconds = body.timeoutSeconds ?? (config.defaultTimeoutSeconds || null)
    const { row, created } = await store.submit({
      type: body.type,
      name: body.name ?? null,
      params,
      steps,
      priority: body.priority ?? 0,
      timeoutMs: timeoutSeconds === null ? null : timeoutSeconds * 1000,
      idempotencyKey: (req.headers['idempotency-key'] as string | undefined) ?? null,
      retryOf: null
    }, config.maxPending, { anySeed })
    reply.header('location', `/api/jobs/${row.id}`)
    if (!created) return reply.code(200).send(toJob(row))
    req.log.info({ jobId: row.id, event: 'submitted', params: JSON.parse(row.params), priority: row.priority }, 'job submitted')
    scheduler.wake()
    return reply.code(201).send(toJob(row))
  })

  app.get('/api/jobs', {
    schema: {
      summary: 'List jobs, newest first',
      description: 'Pages with `limit` and `cursor` (the previous page\'s nextCursor); filter with `status` (repeated or comma-separated for several), `type`, `name` (contains) and `createdFrom` / `createdTo`.',
      tags: ['jobs'],
      querystring: ListQuery,
      response: { 200: JobList, 400: ErrorReply }
    }
  }, async (req) => {
    const { limit, cursor, ...input } = req.query
    const page = await store.list({ filter: parseFilter(input, 'querystring'), limit, cursor })
    return { jobs: page.jobs.map(toJob), nextCursor: page.nextCursor }
  })

  app.get('/api/jobs/counts', {
    schema: {
      summary: 'Count jobs by status under a filter',
      description: 'The same filter as GET /api/jobs. `counts` are per status under the filter\'s other conditions (so every status shows what it would hold); `total` matches the whole filter.',
      tags: ['jobs'],
      querystring: FilterQuery,
      response: { 200: CountsReply, 400: ErrorReply }
    }
  }, async (req) => {
    const filter = parseFilter(req.query, 'querystring')
    const counts = await store.counts(filter)
    const statuses = filter.status ?? Object.keys(counts) as Array<keyof typeof counts>
    return { counts, total: statuses.reduce((sum, s) => sum + counts[s], 0) }
  })

  let bulkRunning = false
  // A bulk action stops between two batches when the server closes: close() waits for requests in flight, and a
  // bulk over every job could outlast the shutdown grace, so that running jobs would never be released.
  const closing = new AbortController()
  app.addHook('preClose', (done) => { closing.abort(); done() })
  app.post('/api/jobs/bulk', {
    schema: {
      summary: 'Cancel, retry or delete every job matching a filter',
      description: 'Every job the filter matches when the action starts, not one page, in short transactions so workers are not kept waiting; each change is on the live stream. A job the action does not apply to (deleting a running job, retrying a done one) is skipped with the reason. One bulk action at a time (409 meanwhile).',
      tags: ['jobs'],
      body: BulkBody,
      response: { 200: BulkReply, 400: ErrorReply, 409: ErrorReply }
    }
  }, async (req, reply) => {
    const filter = parseFilter(req.body.filter, 'body/filter')
    if (bulkRunning) return reply.code(409).send({ statusCode: 409, error: 'Conflict', message: 'another bulk action is running; try again when it has finished' })
    bulkRunning = true
    try {
      const about = { event: 'bulk', action: req.body.action, filter: req.body.filter }
      req.log.info(about, `bulk ${req.body.action} started`)
      let logged = Date.now()
      const outcome = await runBulk(store, req.body.action, filter, {
        maxPending: config.maxPending,
        signal: closing.signal,
        // What is done so far reaches the log every few seconds: the answer comes only at the end.
        onBatch: (so) => {
          if (Date.now() - logged < BULK_PROGRESS_LOG_MS) return
          logged = Date.now()
          req.log.info({ ...about, matched: so.matched, changed: so.changed, skipped: so.skippedTotal }, `bulk ${req.body.action} in progress`)
        }
      })
      const figures = { ...about, matched: outcome.matched, changed: outcome.changed, skipped: outcome.skippedTotal }
      if (outcome.interrupted) req.log.warn(figures, `bulk ${req.body.action} interrupted: the server is closing`)
      else req.log.info(figures, `bulk ${req.body.action}`)
      if (outcome.changed > 0) scheduler.wake()
      return outcome
    } finally {
      bulkRunning = false
    }
  })

  app.get('/api/jobs/:id/events', {
    schema: {
      summary: 'A job\'s history',
      description: 'What happened to the job, oldest first, each event with a sentence: submitted, claimed, started (from scratch or resumed from step k), checkpoints (the first of an attempt, then at most one a minute), stop requests, releases, lost attempts with the reason, and its end.',
      tags: ['jobs'],
      params: IdParams,
      response: { 200: JobEventList, 400: ErrorReply, 404: ErrorReply }
    }
  }, async (req, reply) => {
    const row = await store.get(req.params.id)
    if (!row) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `job ${req.params.id} not found` })
    return { jobId: row.id, events: (await store.events(row.id)).map((e) => toJobEvent(e, row.steps)) }
  })

  let logReads = 0
  app.get('/api/jobs/:id/log', {
    schema: {
      summary: 'A job\'s log lines',
      description: 'The server\'s and the workers\' JSON log lines with this jobId, from LOG_FILE (its last MiB, at most 200 lines); empty with `logFile: false` when the log goes to stdout.',
      tags: ['jobs'],
      params: IdParams,
      response: { 200: JobLogReply, 400: ErrorReply, 404: ErrorReply, 429: ErrorReply }
    }
  }, async (req, reply) => {
    const row = await store.get(req.params.id)
    if (!row) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `job ${req.params.id} not found` })
    if (!config.logFile) return { jobId: row.id, logFile: false, bytesRead: 0, lines: [] }
    if (logReads >= LOG_READS_AT_ONCE) {
      return reply.code(429).header('retry-after', '1').send({ statusCode: 429, error: 'Too Many Requests', message: `the log is being read by ${logReads} requests; try again in a second` })
    }
    logReads++
    try {
      const { lines, bytesRead } = await readJobLogLines(config.logFile, row.id)
      return { jobId: row.id, logFile: true, bytesRead, lines }
    } finally {
      logReads--
    }
  })

  app.get('/api/jobs/:id', {
    schema: { summary: 'Read a job', tags: ['jobs'], params: IdParams, response: { 200: JobSchema, ...errors } }
  }, async (req, reply) => {
    const row = await store.get(req.params.id)
    if (!row) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `job ${req.params.id} not found` })
    return toJob(row)
  })

  app.post('/api/jobs/:id/cancel', {
    schema: {
      summary: 'Cancel a job',
      description: 'A pending job is canceled at once; a running one is asked to stop and ends canceled within a few seconds. 409 if already finished.',
      tags: ['jobs'],
      params: IdParams,
      response: { 200: JobSchema, ...errors }
    }
  }, async (req) => {
    const row = await store.cancel(req.params.id)
    req.log.info({ jobId: row.id, event: row.status === 'canceled' ? 'canceled' : 'cancel-requested' }, 'job cancel requested')
    scheduler.wake()
    return toJob(row)
  })

  app.post('/api/jobs/:id/retry', {
    schema: {
      summary: 'Retry a failed or canceled job',
      description: 'Creates a new pending job with the same parameters (retryOf points back). 409 for jobs that did not fail or were not canceled.',
      tags: ['jobs'],
      params: IdParams,
      response: { 201: JobSchema, ...errors, 429: ErrorReply }
    }
  }, async (req, reply) => {
    const row = await store.retry(req.params.id, config.maxPending)
    req.log.info({ jobId: row.id, retryOf: req.params.id, event: 'submitted' }, 'job submitted (retry)')
    scheduler.wake()
    return reply.code(201).header('location', `/api/jobs/${row.id}`).send(toJob(row))
  })

  app.delete('/api/jobs/:id', {
    schema: {
      summary: 'Delete a finished job',
      description: 'Removes the job and everything stored for it. 409 while it is pending or running (cancel it first).',
      tags: ['jobs'],
      params: IdParams,
      response: { 204: Type204, ...errors }
    }
  }, async (req, reply) => {
    await store.remove(req.params.id)
    req.log.info({ jobId: req.params.id, event: 'deleted' }, 'job deleted')
    return reply.code(204).send(null)
  })
}

const Type204 = { type: 'null', description: 'deleted' } as const
