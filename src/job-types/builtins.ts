/**
 * The built-in job types: one module each in this folder, named like the type, default-exporting its definition.
 * Adding a built-in is one line here and one in resolve.ts's BUILT_IN_IMPORTS (and its module). Nothing is
 * imported from this list: the server loads every module at start, a worker only the one of its job.
 */
export const BUILT_IN_TYPES: readonly string[] = [
  'lyapunov',
  'matmul',
  'matpow'
]

// The running extension: .ts under the test runner's loader, .js in dist/.
const EXTENSION = import.meta.url.endsWith('.ts') ? '.ts' : '.js'

/** Where the module of built-in type `name` is. */
export function builtInModule (name: string): URL {
  return new URL(`./${name}${EXTENSION}`, import.meta.url)
}
