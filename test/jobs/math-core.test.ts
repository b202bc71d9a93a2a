/**
 * The mathjs a worker multiplies with (dist/mathjs-core.cjs, built by `npm run build`, which `npm test` runs
 * first): only multiply's and DenseMatrix's factories, and no implicit conversions, so that a new worker builds
 * multiply's dispatch cheaply. Its products of 'number' matrices must be the full mathjs's, bit for bit, in every
 * shape a job calls it with; a call that would need a conversion is refused rather than converted.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Matrix } from 'mathjs'
import t, { type Test } from 'tap'
import { fullMath, mathCore, mathCoreError, mathCoreSource } from '../../src/jobs/math-core.js'

const CORE = fileURLToPath(new URL('../../dist/mathjs-core.cjs', import.meta.url))
const missing = !existsSync(CORE) && 'needs npm run build (with esbuild) first'

t.test('the built core is the one in use: a core that fails to load does not pass for a missing one', { skip: missing }, async (t) => {
  t.equal(mathCoreError, undefined, 'no load error')
  t.equal(mathCoreSource, 'core', 'products use dist/mathjs-core.cjs')
})

/** Reproducible values of both signs and many magnitudes (not a job's generator: any numbers will do). */
function numbers (count: number, seed: number): number[] {
  let s = seed >>> 0
  const out: number[] = []
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out.push(((s / 2 ** 32) - 0.5) * 10 ** ((s % 7) - 3))
  }
  return out
}

function rows (r: number, c: number, seed: number): number[][] {
  const flat = numbers(r * c, seed)
  return Array.from({ length: r }, (_, i) => flat.slice(i * c, (i + 1) * c))
}

const dense = (data: number[][] | number[], size: number[]): Matrix => new mathCore.DenseMatrix({ data, size, datatype: 'number' })

/** Same bits: every element identical as a float64 (Object.is also tells -0 from 0). */
function sameBits (t: Test, got: unknown, want: unknown, what: string): void {
  const a = (got as number[] | number[][]).flat()
  const b = (want as number[] | number[][]).flat()
  t.equal(a.length, b.length, `${what}: same size`)
  const differing = a.findIndex((x, i) => !Object.is(x, b[i]))
  t.equal(differing, -1, `${what}: bit-identical to the full mathjs`)
}

t.test('the core multiplies number matrices bit-identically to the full mathjs', { skip: missing }, async (t) => {
  const full = fullMath()
  // The panel and block shapes of the lyapunov and chain kernels, a square product, and a 1-row edge.
  for (const [r, k, c] of [[32, 61, 1], [7, 50, 32], [33, 33, 33], [1, 40, 3]] as const) {
    const a = rows(r, k, r * 1000 + k)
    const b = rows(k, c, k * 1000 + c)
    const got = (mathCore.multiply(dense(a, [r, k]), dense(b, [k, c])) as Matrix).valueOf()
    const want = (full.multiply(full.matrix(a), full.matrix(b)) as Matrix).valueOf()
    sameBits(t, got, want, `${r}×${k} · ${k}×${c}`)
    // Matrix times a 1-D column (mathjs's matrix-vector loop, what the kernels call).
    const column = b.map((row) => row[0]!)
    const gotV = (mathCore.multiply(dense(a, [r, k]), dense(column, [k])) as Matrix).valueOf()
    const wantV = (full.multiply(full.matrix(a), full.matrix(column)) as Matrix).valueOf()
    sameBits(t, gotV, wantV, `${r}×${k} · column`)
  }
})

t.test('special values and a matrix without a datatype give the full mathjs\'s bits too', { skip: missing }, async (t) => {
  const full = fullMath()
  const a = [[0, -0, 1e-310], [Infinity, -Infinity, 2], [NaN, 1, -0]]
  const b = [[-0, 1, Infinity], [0, -1, 3], [5e-324, NaN, -0]]
  const want = (full.multiply(full.matrix(a), full.matrix(b)) as Matrix).valueOf()
  sameBits(t, (mathCore.multiply(dense(a, [3, 3]), dense(b, [3, 3])) as Matrix).valueOf(), want, "'number' datatype")
  // No datatype: mathjs dispatches each element's product and sum instead of finding them once.
  const untyped = new mathCore.DenseMatrix({ data: b, size: [3, 3] } as unknown as ConstructorParameters<typeof mathCore.DenseMatrix>[0])
  sameBits(t, (mathCore.multiply(dense(a, [3, 3]), untyped) as Matrix).valueOf(), want, 'no datatype on one operand')
})

t.test('a call that needs an implicit conversion is refused by the core, not converted', { skip: missing }, async (t) => {
  t.equal(fullMath().multiply(2, '3' as unknown as number), 6, 'the full mathjs converts the string')
  t.throws(() => mathCore.multiply(2, '3' as unknown as number), TypeError, 'the core has no conversions to try')
  t.equal(mathCore.multiply(2, 3), 6, 'exact signatures still dispatch')
})
