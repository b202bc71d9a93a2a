/**
 * POST /api/jobs bodies: the envelope first (common fields, no unknown ones), then the params against the schema
 * of the type named, compiled when the type was loaded. Errors come out as Ajv errors with their path from the
 * body's root, so Fastify words them as for any other route: "body/params/n must be <= 2000".
 */
import type { ErrorObject } from 'ajv'
import { createAjv } from '../ajv.js'
import type { JobTypeCatalog } from '../job-types/catalog.js'
import type { SubmitContext } from '../jobs/contract.js'
import type { MatrixStore } from '../matrices/store.js'
import { SubmitCommon, SubmitEnvelope, type Submission } from './schemas.js'

/** Fields of the flat lyapunov shorthand. */
const FLAT_FIELDS = ['n', 'steps', 'seed'] as const

type Result = { value: Submission } | { error: ErrorObject[] }

const fail = (instancePath: string, message: string): Result => ({ error: [{ keyword: 'type', instancePath, schemaPath: '#', params: {}, message }] })

/** What a type's check() may look up at submit: the shapes of stored matrices. */
export function createSubmitContext (matrices?: Pick<MatrixStore, 'shape'>, maxMatrixBytes?: number): SubmitContext {
  return { matrix: (id) => matrices?.shape(id), maxMatrixBytes }
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
