import t from 'tap'
import { resultToJson } from '../../src/jobs/result-json.js'

t.test('a result is stored as JSON only when JSON says exactly what it holds', async (t) => {
  t.equal(resultToJson({ a: 1.5, b: [1, 'x', null, { c: true }], d: undefined }), '{"a":1.5,"b":[1,"x",null,{"c":true}]}', 'plain values as JSON.stringify writes them')
  const shared = { v: 1 }
  t.equal(resultToJson({ x: shared, y: shared }), '{"x":{"v":1},"y":{"v":1}}', 'a value used twice is not a cycle')
  const cyclic: Record<string, unknown> = { a: 1 }
  cyclic.self = { back: cyclic }
  const cases: Array<[string, unknown, RegExp]> = [
    ['BigInt', { n: 10n }, /result\.n is a BigInt/],
    ['NaN', { stats: { mean: NaN } }, /result\.stats\.mean is NaN/],
    ['Infinity', { v: [1, Infinity] }, /result\.v\[1\] is Infinity/],
    ['cycle', cyclic, /result\.self\.back refers back to itself/],
    ['typed array', { v: new Float64Array(2) }, /result\.v is a typed array/],
    ['not an object', 42, /must return a plain object, got number/],
    ['an array', [1], /got an array/],
    ['null', null, /got null/]
  ]
  for (const [what, value, message] of cases) t.throws(() => resultToJson(value), { message }, `${what} refused`)
})
