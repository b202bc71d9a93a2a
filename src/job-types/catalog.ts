/**
 * The job types a server offers: the built-ins (src/job-types/) and the modules of JOB_TYPES_DIR, loaded once at
 * start. The server reads their definitions (schema, title, prepare/check/steps); it never runs their units, which
 * happen in the worker of each job. A module that cannot be used is listed with its error and refused at submit;
 * it never stops the server.
 */
import { readdirSync } from 'node:fs'
import { basename, extname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Ajv } from 'ajv'
import { createAjv } from '../ajv.js'
import { coerceError } from '../errors.js'
import type { JobTypeDefinition } from '../jobs/contract.js'
import { BUILT_IN_TYPES, builtInModule } from './builtins.js'
import { type CheckedDefinition, checkDefinition } from './definition.js'

/** One type as loaded: usable (definition + validate) or not (error). */
export interface LoadedType {
  /** The definition's name; for a module that could not be read, its file name without extension. */
  name: string
  /** Absolute path of its module. */
  file: string
  builtIn: boolean
  definition?: JobTypeDefinition
  validate?: CheckedDefinition['validate']
  /** Why the type cannot be used. */
  error?: string
}

/** Log methods the loader uses. */
interface LoaderLog {
  info (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
}

/** The loaded types, by name. */
export interface JobTypeCatalog {
  /** Every type, built-ins first, then user modules in file-name order (broken ones included). */
  readonly types: readonly LoadedType[]
  get (name: string): LoadedType | undefined
  /** name → module path of the usable user types: what a worker needs to import its job's module. */
  readonly userModules: Readonly<Record<string, string>>
}

/** Files of a JOB_TYPES_DIR that are job types. */
const MODULE_FILE = /\.m?js$/

/** A module whose import (top-level await) has not settled by then is refused, so the server still starts. */
const IMPORT_TIMEOUT_MS = 10_000

/** Imports a module and checks its default export; never throws. */
async function loadModule (file: string, builtIn: boolean, ajv: Ajv): Promise<LoadedType> {
  const fallbackName = basename(file, extname(file))
  try {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`importing the module took more than ${IMPORT_TIMEOUT_MS} ms`)), IMPORT_TIMEOUT_MS)
    })
    const mod = await Promise.race([import(pathToFileURL(file).href), timeout]).finally(() => clearTimeout(timer)) as { default?: unknown }
    const checked = checkDefinition(mod.default, ajv)
    return { name: checked.definition.name, file, builtIn, definition: checked.definition, validate: checked.validate }
  } catch (err) {
    return { name: fallbackName, file, builtIn, error: coerceError(err).message }
  }
}

/**
 * Loads the built-in types and every *.js / *.mjs of `dir` (if given). A second type with a name already taken
 * (by a built-in or an earlier file) is refused, with a log line naming both files.
 */
export async function loadJobTypes ({ dir, log, ajv = createAjv() }: { dir?: string, log?: LoaderLog, ajv?: Ajv }): Promise<JobTypeCatalog> {
  const types: LoadedType[] = []
  const byName = new Map<string, LoadedType>()
  const add = (type: LoadedType): void => {
    const taken = byName.get(type.name)
    if (taken) {
      const reason = `the name "${type.name}" is already taken by ${taken.builtIn ? 'the built-in type in ' : ''}${taken.file}`
      log?.error({ event: 'job-type-refused', file: type.file, name: type.name, takenBy: taken.file }, `job type in ${type.file} refused: ${reason}`)
      // Listed under its file name so the list shows it; the name stays the first one's.
      const refused: LoadedType = { name: basename(type.file, extname(type.file)), file: type.file, builtIn: false, error: reason }
      types.push(refused)
      // So that a submission naming it gets this reason, unless that name is someone else's.
      if (!byName.has(refused.name)) byName.set(refused.name, refused)
      return
    }
    byName.set(type.name, type)
    types.push(type)
    if (type.error) {
      log?.error({ event: 'job-type-error', file: type.file, name: type.name, reason: type.error }, `job type in ${type.file} cannot be used: ${type.error}`)
    }
  }

  for (const name of BUILT_IN_TYPES) {
    const loaded = await loadModule(fileURLToPath(builtInModule(name)), true, ajv)
    if (!loaded.error && loaded.name !== name) loaded.error = `a built-in module must be named like its type (${loaded.name})`
    add(loaded)
  }
  if (dir) {
    const root = resolve(dir)
    let files: string[] = []
    try {
      files = readdirSync(root).filter((f) => MODULE_FILE.test(f)).sort()
    } catch (err) {
      log?.error({ event: 'job-type-error', dir: root, reason: coerceError(err).message }, `JOB_TYPES_DIR ${root} cannot be read; no user job types loaded`)
    }
    for (const file of files) add(await loadModule(join(root, file), false, ajv))
    const usable = files.length - types.filter((t) => !t.builtIn && t.error).length
    log?.info({ event: 'job-types-loaded', dir: root, loaded: usable, files: files.length }, 'user job types loaded')
  }

  const userModules: Record<string, string> = {}
  for (const type of types) if (!type.builtIn && !type.error) userModules[type.name] = type.file
  return {
    types,
    get: (name) => byName.get(name),
    userModules
  }
}
