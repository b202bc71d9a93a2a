// Run by `npm run build` after tsc, on the user's machine, from what is installed (nothing is downloaded):
//
// 1. dist/mathjs-core.cjs: mathjs `create()`d with only the factories a worker's product needs (multiply,
//    DenseMatrix) and no implicit conversions, one tree-shaken CommonJS file. Same mathjs code as the full bundle,
//    so the same bits; a new process loads it and builds multiply's dispatch for a fraction of the full bundle's
//    cost (src/jobs/math-core.ts).
// 2. dist/jobs/worker-bundle.cjs: dist/jobs/worker.js and everything it imports (pino included; better-sqlite3,
//    a native module, mathjs, loaded by path, and pg, required only on PostgreSQL, stay outside) in one CommonJS
//    file, so a forked worker resolves, reads and compiles one file instead of ~60, and never starts the ES module
//    loader. Each module's `import.meta.url` is rewritten to the URL of its own dist/ file, so paths relative to it
//    (migrations, thread entry, mathjs-core) stay what they were. A user job type is still imported with import().
//
// Without esbuild (installed without dev dependencies) neither file is made and workers start from the plain
// dist/ modules and the full mathjs bundle, which compute the same; the server and the worker log it.
import { readFileSync, rmSync } from 'node:fs'
import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const DIST = `${ROOT}dist/`
const CORE = `${DIST}mathjs-core.cjs`
const WORKER_BUNDLE = `${DIST}jobs/worker-bundle.cjs`
// V8's code cache of forked workers (src/jobs/scheduler.ts, WORKER_COMPILE_CACHE): emptied with each build, so it
// never holds more than one build's entries.
const COMPILE_CACHE = `${DIST}jobs/.compile-cache`

rmSync(COMPILE_CACHE, { recursive: true, force: true })

let esbuild
try {
  esbuild = await import('esbuild')
} catch {
  rmSync(CORE, { force: true })
  rmSync(WORKER_BUNDLE, { force: true })
  console.warn('build-worker: esbuild is not installed; workers will start from the plain modules and the full mathjs (slower start)')
  process.exit(0)
}

/**
 * The factories of multiply and DenseMatrix and everything they depend on, less the classes of the number types a
 * worker never multiplies (BigNumber, Complex, Fraction: optional dependencies of mathjs's `typed`). Read from
 * mathjs's own dependency lists, so a new mathjs version brings its own.
 */
function coreFactories (math) {
  const names = new Set()
  const walk = (deps) => {
    for (const [name, value] of Object.entries(deps)) {
      if (typeof value === 'function') names.add(name)
      else walk(value)
    }
  }
  walk({ multiplyDependencies: math.multiplyDependencies, DenseMatrixDependencies: math.DenseMatrixDependencies })
  for (const name of ['createBigNumberClass', 'createComplexClass', 'createFractionClass']) names.delete(name)
  return [...names].sort()
}

// The core's `typed` also drops mathjs's implicit conversions (number → BigNumber, Complex, Fraction, Array →
// Matrix, …) before any function is built. A worker only multiplies 'number' DenseMatrix objects, which dispatch
// on exact signatures ('Matrix, Matrix' and, per element, typed.find(…, ['number', 'number'])): the same calls and
// the same bits, while multiply's dispatch, built by every new worker, is built from a fraction of the signature
// combinations (~30 → ~13 ms of CPU; docs/benchmarks.md, "Worker start"). A call the core cannot dispatch exactly
// throws a TypeError instead of converting.
const factories = coreFactories(await import('mathjs'))
await esbuild.build({
  stdin: {
    contents: `import { create, ${factories.join(', ')} } from 'mathjs'
export const math = create({ ${factories.join(', ')} })
math.typed.clearConversions()`,
    resolveDir: ROOT,
    loader: 'js'
  },
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  outfile: CORE,
  legalComments: 'inline',
  logLevel: 'warning'
})

/** Every dist/ module's `import.meta.url`, as the URL of its own file relative to the bundle's. */
const ownUrls = {
  name: 'own-import-meta-url',
  setup (build) {
    build.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8')
      const rel = relative(`${DIST}jobs`, args.path).split('\\').join('/')
      const own = `new URL(${JSON.stringify(rel.startsWith('.') ? rel : `./${rel}`)}, __nonstopBundleUrl).href`
      return { contents: source.replaceAll('import.meta.url', own), loader: 'js' }
    })
  }
}

await esbuild.build({
  entryPoints: [`${DIST}jobs/worker.js`],
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  outfile: WORKER_BUNDLE,
  // Native, and mathjs is required by path at run time (src/jobs/math-core.ts). pg stays outside too: only a
  // worker on PostgreSQL requires it (src/store/open.ts loads the PostgreSQL store on demand), and inside the
  // bundle its ~220 kB would be compiled by every worker, on SQLite too. (Bundled, it would need pg-native, its
  // optional native binding, marked external.)
  external: ['better-sqlite3', 'mathjs', 'pg', 'pg-native'],
  banner: { js: "const __nonstopBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  plugins: [ownUrls],
  legalComments: 'inline',
  logLevel: 'warning'
})
