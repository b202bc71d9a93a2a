/**
 * POST /api/jobs bodies: the envelope first (common fields, no unknown ones), then the params against the schema
 * of the type named, compiled when the type was loaded. Errors come out as Ajv errors with their path from the
 * body's root, so Fastify words them as for any other route: "body/params/n must be <= 2000".
 */
import type { ErrorObject } from 'ajv'
import { createAjv, MATRIX_ID_KEYWORD } from '../ajv.js'
import type { JobTypeCatalog } from '../job-types/catalog.js'
import type { JobTypeDefinition, SubmitContext } from '../jobs/contract.js'
import type { AsyncMatrixStore } from '../store/matrix-store.js'
import { SubmitCommon, SubmitEnvelope, type Submission } from './schemas.js'

/** Fields of the flat lyapunov shorthand. */
const FLAT_FIELDS = ['n', 'steps', 'seed'] as const

type Result = { value: Submission } | { error: ErrorObject[] }

const fail = (instancePath: string, message: string): Result => ({ error: [{ keyword: 'type', instancePath, schemaPath: '#', params: {}, message }] })

type Shape = { rows: number, cols: number } | undefined

/** The matrix store failed while shapes were read for a check: the server's trouble (500), not the params'. */
export class ShapeReadError extends Error {
  constructor (cause: unknown) {
    super('could not read the shapes of the matrices a submission names', { cause })
  }
}

/** Most matrix ids of one submission whose shapes are read (matmul takes at most 32). */
const MAX_SHAPE_LOOKUPS = 256
/** Most times a type's check() runs again after asking for shapes its schema does not mark. */
const MAX_CHECK_ROUNDS = 3

/**
 * The ids of stored matrices `value` holds where `schema` marks them (MATRIX_ID_KEYWORD on a property, or on an
 * array's items), at any depth; the same annotation the dashboard's form reads.
 */
export function matrixIdsIn (schema: unknown, value: unknown, into: Set<number> = new Set()): Set<number> {
  if (schema === null || typeof schema !== 'object' || into.size >= MAX_SHAPE_LOOKUPS) return into
  const s = schema as Record<string, unknown>
  if (s[MATRIX_ID_KEYWORD] === true && typeof value === 'number') into.add(value)
  if (Array.isArray(value) && s.items !== null && typeof s.items === 'object' && !Array.isArray(s.items)) {
    for (const item of value) matrixIdsIn(s.items, item, into)
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && s.properties !== null && typeof s.properties === 'object') {
    const properties = s.properties as Record<string, unknown>
    for (const [key, v] of Object.entries(value)) if (Object.hasOwn(properties, key)) matrixIdsIn(properties[key], v, into)
  }
  for (const key of ['allOf', 'anyOf', 'oneOf'] as const) {
    if (Array.isArray(s[key])) for (const sub of s[key] as unknown[]) matrixIdsIn(sub, value, into)
  }
  return into
}

/**
 * Runs a type's check() at submit. Its SubmitContext is synchronous (a type's checks stay pure) while the matrix
 * store is not: the shapes of the matrices the params name (by the schema's MATRIX_ID_KEYWORD) are read first, and
 * check() answers from them. A check that asks for an id the schema does not mark is run again once that shape is
 * read (at most MAX_CHECK_ROUNDS times), so it decides on what is stored, never on a guess. A failing read rejects
 * with ShapeReadError; whatever check() throws is thrown as it is.
 */
export async function checkSubmission<P> (type: Pick<JobTypeDefinition<P>, 'check' | 'params'>, params: P,
  matrices: Pick<AsyncMatrixStore, 'shape'> | undefined, maxMatrixBytes?: number): Promise<string | undefined> {
  if (!type.check) return undefined
  const shapes = new Map<number, Shape>()
  const read = async (ids: Iterable<number>): Promise<void> => {
    for (const id of ids) {
      if (shapes.has(id)) continue
      // An id no store could hold is not looked up (PostgreSQL would refuse it as a bigint).
      let shape: Shape
      try {
        shape = matrices && Number.isSafeInteger(id) && id >= 1 ? await matrices.shape(id) : undefined
      } catch (err) {
        throw new ShapeReadError(err)
      }
      shapes.set(id, shape)
    }
  }
  await read(matrixIdsIn(type.params, params))
  for (let round = 0; ; round++) {
    const asked = new Set<number>()
    const ctx: SubmitContext = {
      matrix: (id) => {
        if (shapes.has(id)) return shapes.get(id)
        asked.add(id)
        return undefined
      },
      maxMatrixBytes
    }
    const refused = type.check(params, ctx)
    if (asked.size === 0 || round >= MAX_CHECK_ROUNDS || shapes.size + asked.size > MAX_SHAPE_LOOKUPS) return refused
    await read(asked)
  }
}

/** A Fastify body validator for submissions to the types of `catalog`. */
export function createSubmitValidator (catalog: JobTypeCatalog): (body: unknown) => Result {
  const envelope = createAjv().compile(SubmitEnvelope)
  return (body) => {
    if (!envelope(body)) return { error: envelope.errors ?? [] }
    const b = body as Record<string, unknown>
    const flat = FLAT_FIELDS.filter((f) => f in b)
    const typeName = (b.type as string | undefined) ?? 'lyapunov'
    const type = catalog.get(typeName)
    if (!type) {
      const known = catalog.types.filter((t) => !t.error).map((t) => t.name).join(', ')
      return fail('/type', `must be one of the job types of this server (${known}), got "${typeName}"`)
    }
    if (type.error || !type.validate) return fail('/type', `"${typeName}" cannot be used: ${type.error}`)
    let params: Record<string, unknown>
    let prefix: string
    if ('params' in b) {
      if (flat.length > 0) return fail('', `must not mix the flat lyapunov fields (${flat.join(', ')}) with params: send {type, params} or {n, steps, seed}`)
      if (typeof b.type !== 'string') return fail('', 'must have required property \'type\' along with params')
      params = b.params as Record<string, unknown>
      prefix = '/params'
    } else {
      if (typeName !== 'lyapunov') return fail('', 'must have required property \'params\' (the flat form n, steps, seed is for lyapunov only)')
      params = {}
      for (const f of flat) params[f] = b[f]
      prefix = ''
    }
    if (!type.validate(params)) {
      return { error: (type.validate.errors ?? []).map((e) => ({ ...e, instancePath: prefix + e.instancePath })) }
    }
    const value: Submission = { type: typeName, params }
    for (const key of Object.keys(SubmitCommon) as Array<keyof typeof SubmitCommon>) {
      if (b[key] !== undefined) (value as unknown as Record<string, unknown>)[key] = b[key]
    }
    return { value }
  }
}

/**
 * The body as OpenAPI shows it: one variant per usable type (`type` fixed, `params` its schema), and the flat
 * lyapunov shorthand. For the docs only; validation is createSubmitValidator's.
 */
export function submitDocSchema (catalog: JobTypeCatalog): Record<string, unknown> {
  const variants: Array<Record<string, unknown>> = []
  for (const type of catalog.types) {
    if (type.error || !type.definition) continue
    variants.push({
      type: 'object',
      title: type.name,
      description: `${type.definition.title}: ${type.definition.description}`,
      properties: {
        type: { type: 'string', const: type.name },
        params: type.definition.params,
        ...SubmitCommon
      },
      required: ['type', 'params'],
      additionalProperties: false
    })
  }
  const lyapunov = catalog.get('lyapunov')?.definition?.params as { properties?: object, required?: string[] } | undefined
  if (lyapunov) {
    variants.push({
      type: 'object',
      title: 'lyapunov (flat)',
      description: 'Shorthand for {"type":"lyapunov","params":{n, steps, seed}}',
      properties: { type: { type: 'string', const: 'lyapunov' }, ...lyapunov.properties, ...SubmitCommon },
      required: lyapunov.required,
      additionalProperties: false
    })
  }
  return { oneOf: variants }
}
