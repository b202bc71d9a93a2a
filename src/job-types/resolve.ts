/**
 * The module of a job's type, as a worker finds it: a built-in by its name, a user type through the name → path
 * map its server computed at start and passed in the environment (WORKER_ENV.jobTypeModules). A worker imports
 * this one module and no other.
 */
import { pathToFileURL } from 'node:url'
import { BUILT_IN_TYPES, builtInModule } from './builtins.js'
import type { JobTypeDefinition } from '../jobs/contract.js'
import { checkDefinitionShape } from './definition.js'

/** The built-ins' modules (src/job-types/builtins.ts lists them), imported by name. */
const BUILT_IN_IMPORTS: Readonly<Record<string, () => Promise<unknown>>> = {
  lyapunov: () => import('./lyapunov.js'),
  matmul: () => import('./matmul.js'),
  matpow: () => import('./matpow.js')
}

/** Imports and checks the definition of type `name`; throws an Error saying why it cannot. */
export async function importJobType (name: string, userModules: Record<string, string>): Promise<JobTypeDefinition> {
  let url: string
  let mod: { default?: unknown }
  if (BUILT_IN_TYPES.includes(name)) {
    url = builtInModule(name).href
    // Static specifiers, so that the bundled worker (scripts/build-worker.js) carries the built-ins inside it
    // instead of loading a second copy of the modules they share with it.
    mod = await (BUILT_IN_IMPORTS[name] ?? (() => import(url)))() as { default?: unknown }
  } else if (Object.hasOwn(userModules, name)) {
    url = pathToFileURL(userModules[name]).href
    mod = await import(url) as { default?: unknown }
  } else throw new Error(`job type "${name}" is not loaded by this server (is its module still in JOB_TYPES_DIR?)`)
  const definition = checkDefinitionShape(mod.default)
  if (definition.name !== name) throw new Error(`the module at ${url} now defines "${definition.name}", not "${name}"`)
  return definition
}

/** Parses the map a server passes to its workers; an absent or unreadable value is an empty map. */
export function parseUserModules (raw: string | undefined): Record<string, string> {
  if (!raw) return {}
  try {
    const parsed = JSON.parse(raw) as unknown
    return typeof parsed === 'object' && parsed !== null ? parsed as Record<string, string> : {}
  } catch {
    return {}
  }
}
