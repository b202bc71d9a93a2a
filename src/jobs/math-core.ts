/**
 * The mathjs a worker's product needs, loaded cheaply. A forked worker only ever calls `multiply` on 'number'
 * DenseMatrix objects; the full mathjs bundle costs a new process ~0.1 s of CPU to load and ~0.1 s more to build
 * multiply's dispatch, most of it for functions the worker never calls. `npm run build` makes dist/mathjs-core.cjs
 * (scripts/build-worker.js): mathjs `create()`d with only multiply's and DenseMatrix's factories and without
 * implicit conversions (a 'number' product dispatches on exact signatures), the same code as the full bundle, so
 * the same bits. Where that file is missing the full bundle stands in (one log line from the worker says so).
 *
 * The full instance (`fullMath()`, what `JobContext.math` gives a job type) is loaded only when something asks.
 */
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { MathJsInstance, Matrix } from 'mathjs'

const require = createRequire(import.meta.url)

/** The part of mathjs the product uses. */
export interface MathCore {
  multiply: MathJsInstance['multiply']
  /** `new DenseMatrix({ data, size, datatype })` adopts `data` without copying it. */
  DenseMatrix: new (init: { data: number[][] | number[], size: number[], datatype: 'number' }) => Matrix
}

let full: MathJsInstance | undefined
/** The whole of mathjs, from its single-file bundle (the package's main entry pulls in hundreds of ES modules). */
export function fullMath (): MathJsInstance {
  full ??= require('mathjs/lib/browser/math.js') as MathJsInstance
  return full
}

/** Where the core bundle is: dist/ beside this module's dist/jobs/, or dist/ of the checkout when run from src/. */
function corePath (): string | undefined {
  for (const rel of ['../mathjs-core.cjs', '../../dist/mathjs-core.cjs']) {
    const path = fileURLToPath(new URL(rel, import.meta.url))
    if (existsSync(path)) return path
  }
  return undefined
}

function loadCore (): { math: MathCore, source: 'core' | 'full', error?: string } {
  const path = corePath()
  let error: string | undefined
  if (path) {
    try {
      return { math: (require(path) as { math: MathCore }).math, source: 'core' }
    } catch (err) {
      // A broken build (or a mathjs whose API the build no longer fits): the full bundle computes the same.
      error = `${path} failed to load: ${err instanceof Error ? err.message : String(err)}`
    }
  }
  return { math: fullMath() as unknown as MathCore, source: 'full', error }
}

const loaded = loadCore()

/** multiply and DenseMatrix, from the core bundle or, failing that, the full one. */
export const mathCore: MathCore = loaded.math
/** Which one it is: 'full' means dist/mathjs-core.cjs was not built (no esbuild) or did not load, and workers start
 *  slower. */
export const mathCoreSource = loaded.source
/** Why the core bundle was built but not used, if it was. */
export const mathCoreError: string | undefined = loaded.error
