import type { Ajv, ValidateFunction } from 'ajv'
import { coerceError } from '../errors.js'
import { JOB_TYPE_NAME, type JobTypeDefinition } from '../jobs/contract.js'

/** A definition that passed checkDefinition, with its params schema compiled. */
export interface CheckedDefinition {
  definition: JobTypeDefinition
  /** Validates (and fills defaults into) a params object, without coercion. */
  validate: ValidateFunction
}

/**
 * What a module must default-export to be a job type: a name, a title, a description, a params schema that
 * `ajv` compiles (an object schema), and a create() function; the optional hooks must be functions. Throws an
 * Error whose message says what is wrong.
 */
export function checkDefinition (exported: unknown, ajv: Ajv): CheckedDefinition {
  const definition = checkDefinitionShape(exported)
  try {
    return { definition, validate: ajv.compile(definition.params) }
  } catch (err) {
    throw new Error(`params is not a valid JSON Schema: ${coerceError(err).message}`)
  }
}

/**
 * checkDefinition without compiling the schema: what a worker checks (its server compiled the schema already, and
 * a worker that never loads Ajv boots faster).
 */
export function checkDefinitionShape (exported: unknown): JobTypeDefinition {
  if (exported === undefined) throw new Error('the module has no default export (export default { name, title, description, params, create })')
  if (typeof exported !== 'object' || exported === null) throw new Error(`the default export must be an object, got ${exported === null ? 'null' : typeof exported}`)
  const d = exported as Record<string, unknown>
  if (typeof d.name !== 'string' || !JOB_TYPE_NAME.test(d.name)) {
    throw new Error(`name must match ${JOB_TYPE_NAME} (lower-case letters, digits and dashes, up to 40), got ${JSON.stringify(d.name)}`)
  }
  for (const key of ['title', 'description'] as const) {
    if (typeof d[key] !== 'string' || d[key] === '') throw new Error(`${key} must be a non-empty string`)
  }
  if (typeof d.create !== 'function') throw new Error('create must be a function (params, checkpoint, ctx) => run')
  for (const key of ['prepare', 'check', 'steps'] as const) {
    if (d[key] !== undefined && typeof d[key] !== 'function') throw new Error(`${key} must be a function when present`)
  }
  if (d.measurements !== undefined && !(Array.isArray(d.measurements) && d.measurements.every((m) => typeof m === 'string'))) {
    throw new Error('measurements must be an array of result field names when present')
  }
  const params = d.params as Record<string, unknown> | undefined
  if (typeof params !== 'object' || params === null || Array.isArray(params) || params.type !== 'object') {
    throw new Error('params must be a JSON Schema of type "object"')
  }
  return d as unknown as JobTypeDefinition
}
