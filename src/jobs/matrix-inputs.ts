/**
 * The stored matrices a job reads, loaded before its run starts. A run reads them with the synchronous
 * `JobContext.loadMatrix(id)` (src/jobs/contract.ts), while the matrix store is asynchronous (it may be PostgreSQL):
 * the worker reads every matrix the job's params name before create(), and loadMatrix hands them out from memory.
 *
 * Which params name matrices: the properties (or array items) of the type's params schema marked with the
 * `x-matrix-id` annotation (src/ajv.ts, MATRIX_ID_KEYWORD; the dashboard's matrix picker reads the same mark). A run
 * that asks for a matrix its params do not name that way is told so.
 *
 * The cost: a job's input matrices are all in memory from the start, where a chain of products used to read each
 * factor when its product started.
 */
import { NotFoundError } from '../errors.js'
import type { StoredMatrix } from './contract.js'

/** The schema annotation marking matrix ids; equal to MATRIX_ID_KEYWORD of src/ajv.ts (not imported: that module
 *  loads Ajv, which a worker does not need). */
export const MATRIX_ID_MARK = 'x-matrix-id'

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** The matrix ids `value` holds where `schema` marks them, in order of appearance, each once. */
export function matrixIdsOf (schema: unknown, value: unknown, out: number[] = []): number[] {
  if (!isObject(schema)) return out
  if (schema[MATRIX_ID_MARK] === true) {
    const ids = Array.isArray(value) ? value : [value]
    for (const id of ids) if (Number.isSafeInteger(id) && !out.includes(id as number)) out.push(id as number)
    return out
  }
  if (isObject(value) && isObject(schema.properties)) {
    for (const [key, sub] of Object.entries(schema.properties)) if (Object.hasOwn(value, key)) matrixIdsOf(sub, value[key], out)
  }
  if (Array.isArray(value) && schema.items !== undefined) {
    for (const item of value) matrixIdsOf(schema.items, item, out)
  }
  for (const key of ['allOf', 'anyOf', 'oneOf'] as const) {
    const subs = schema[key]
    if (Array.isArray(subs)) for (const sub of subs) matrixIdsOf(sub, value, out)
  }
  return out
}

/** Loads the matrices with these ids (an absent one is left out: loadMatrix then throws NotFoundError for it). */
export async function preloadMatrices (ids: readonly number[], load: (id: number) => Promise<StoredMatrix>): Promise<Map<number, StoredMatrix>> {
  const loaded = new Map<number, StoredMatrix>()
  for (const id of ids) {
    try {
      loaded.set(id, await load(id))
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err
    }
  }
  return loaded
}

/** The `load` a JobContext reads from: the preloaded matrices only. */
export function preloadedSource (ids: readonly number[], loaded: ReadonlyMap<number, StoredMatrix>): { load: (id: number) => StoredMatrix } {
  return {
    load (id) {
      const m = loaded.get(id)
      if (m) return m
      if (ids.includes(id)) throw new NotFoundError(`matrix ${id} not found`)
      throw new Error(`matrix ${id} is not named by this job's params: a job type marks the params that hold matrix ids with "${MATRIX_ID_MARK}": true in its params schema, and a worker reads those matrices before the run starts`)
    }
  }
}
