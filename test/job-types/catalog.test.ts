/**
 * Loading job types: the built-ins, then each *.js / *.mjs of JOB_TYPES_DIR. A module that cannot be used is listed
 * with its error and logged once, naming its file; it never makes loading throw.
 */
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadJobTypes } from '../../src/job-types/catalog.js'
import { ROOT } from '../fixtures/helpers.js'

/** A log that keeps its lines. */
function memoryLog () {
  const lines: Array<{ level: string, obj: Record<string, unknown>, msg?: string }> = []
  return {
    lines,
    info: (obj: object, msg?: string) => { lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }) },
    error: (obj: object, msg?: string) => { lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg }) }
  }
}

const good = (name: string, extra = ''): string => `export default {
  name: '${name}', title: 'T', description: 'D',
  params: { type: 'object', properties: { k: { type: 'integer' } }, additionalProperties: false },
  create () { throw new Error('never run by the loader') }${extra}
}
`

t.test('built-ins alone when no folder is given', async (t) => {
  const catalog = await loadJobTypes({})
  t.same(catalog.types.map((x) => [x.name, x.builtIn, x.error]), [['lyapunov', true, undefined], ['matmul', true, undefined], ['matpow', true, undefined]], 'the built-ins, usable')
  t.same(catalog.userModules, {}, 'no user modules')
  t.ok(catalog.get('lyapunov')?.validate?.({ n: 3, steps: 2 }), 'its schema is compiled')
})

t.test('every broken-module case is listed with its reason and logged once, naming the file', async (t) => {
  const dir = t.testdir({
    'a-good.mjs': good('a-good'),
    'b-syntax.mjs': 'export default { name: "b-syntax", ',
    'c-throws.mjs': 'throw new Error("no licence key in the environment")\n',
    'd-no-default.mjs': 'export const type = { name: "d" }\n',
    'e-bad-schema.mjs': good('e-bad-schema').replace("{ type: 'integer' }", "{ type: 'integr' }"),
    'f-bad-name.mjs': good('F_Bad'),
    'g-lyapunov.mjs': good('lyapunov'),
    'h-twin.js': good('a-good'),
    'i-not-object-schema.mjs': good('i').replace("params: { type: 'object',", "params: { type: 'array',"),
    'j-no-create.mjs': 'export default { name: "j", title: "T", description: "D", params: { type: "object" } }\n',
    'notes.txt': 'not a module',
    'k-hangs.mjs': 'await new Promise(() => {})\nexport default {}\n'
  })
  const log = memoryLog()
  const started = Date.now()
  const catalog = await loadJobTypes({ dir, log })
  t.ok(Date.now() - started < 30_000, 'a module whose import never settles does not hold loading forever')
  const byFile = new Map(catalog.types.filter((x) => !x.builtIn).map((x) => [x.file.slice(dir.length + 1), x]))
  t.same([...byFile.keys()].sort(), ['a-good.mjs', 'b-syntax.mjs', 'c-throws.mjs', 'd-no-default.mjs', 'e-bad-schema.mjs', 'f-bad-name.mjs', 'g-lyapunov.mjs', 'h-twin.js', 'i-not-object-schema.mjs', 'j-no-create.mjs', 'k-hangs.mjs'], 'every module file is listed, nothing else')
  t.equal(byFile.get('a-good.mjs')?.error, undefined, 'the good module is usable')
  const expected: Array<[string, RegExp]> = [
    ['b-syntax.mjs', /Unexpected end of input|SyntaxError|Unexpected/],
    ['c-throws.mjs', /no licence key in the environment/],
    ['d-no-default.mjs', /no default export/],
    ['e-bad-schema.mjs', /params is not a valid JSON Schema: .*properties\/k\/type/],
    ['f-bad-name.mjs', /name must match .*"F_Bad"/],
    ['g-lyapunov.mjs', /the name "lyapunov" is already taken by the built-in type in .*lyapunov\.(ts|js)/],
    ['h-twin.js', /the name "a-good" is already taken by .*a-good\.mjs/],
    ['i-not-object-schema.mjs', /params must be a JSON Schema of type "object"/],
    ['j-no-create.mjs', /create must be a function/],
    ['k-hangs.mjs', /importing the module took more than/]
  ]
  for (const [file, reason] of expected) {
    t.match(byFile.get(file)?.error, reason, `${file}: ${byFile.get(file)?.error}`)
    const logged = log.lines.filter((l) => l.level === 'error' && l.obj.file === join(dir, file))
    t.equal(logged.length, 1, `${file}: one error line naming the file`)
  }
  const twin = log.lines.find((l) => l.obj.file === join(dir, 'h-twin.js'))
  t.equal(twin?.obj.takenBy, join(dir, 'a-good.mjs'), 'the duplicate line names both files')
  t.match(twin?.msg, /h-twin\.js.*a-good\.mjs/, 'and its message does too')
  t.equal(catalog.get('a-good')?.file, join(dir, 'a-good.mjs'), 'the first of two same-named types keeps the name')
  t.equal(catalog.get('lyapunov')?.builtIn, true, 'a user module cannot replace a built-in')
  t.same(catalog.userModules, { 'a-good': join(dir, 'a-good.mjs') }, 'workers are told of the usable user modules only')
})

t.test('the example type loads as a user type', async (t) => {
  const dir = t.testdir({})
  copyFileSync(join(ROOT, 'examples/job-types/power-iteration.mjs'), join(dir, 'power-iteration.mjs'))
  const catalog = await loadJobTypes({ dir })
  const type = catalog.get('power-iteration')
  t.equal(type?.error, undefined, 'usable')
  t.equal(type?.builtIn, false, 'not built in')
  const params = { n: 10 }
  t.ok(type?.validate?.(params), 'valid params')
  t.same(params, { n: 10, iterations: 500 }, 'defaults from the schema are filled in')
})

t.test('an unreadable folder is logged, and the built-ins still load', async (t) => {
  const log = memoryLog()
  const catalog = await loadJobTypes({ dir: join(t.testdir({}), 'missing'), log })
  t.same(catalog.types.map((x) => x.name), ['lyapunov', 'matmul', 'matpow'], 'built-ins only')
  t.match(log.lines.find((l) => l.level === 'error')?.msg, /JOB_TYPES_DIR .*missing cannot be read/, 'one error line')
})
