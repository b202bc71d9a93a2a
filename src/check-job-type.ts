/**
 * The conformance kit for job-type authors:
 *
 *   [DB_PATH=data/nonstop.db] npm run check-job-type -- <module or built-in name> '<params JSON>' [--cuts N] [--timeout S]
 *
 * Types that read stored matrices (matmul, matpow) take them from the database DB_PATH names.
 *
 * Runs the type once without interruption, then again cut after several random units: at each cut the run is
 * checkpointed and its process exits; a NEW process restores the checkpoint and continues, as a worker does after
 * a kill. It then reports whether both results are bit-identical (or the first difference), whether the fraction
 * never went back and reached 1, the longest unit (warning above 1 s: the heartbeat waits for it), and the
 * checkpoint sizes. Exit code 0 when the type conforms, 1 when it does not, 2 for a usage error.
 */
import { fork } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import Database from 'better-sqlite3'
import { createAjv } from './ajv.js'
import { migrate, openDb } from './db.js'
import { BUILT_IN_TYPES, builtInModule } from './job-types/builtins.js'
import { checkDefinition } from './job-types/definition.js'
import type { Checkpoint } from './jobs/contract.js'
import { createJobContext, createResultContext } from './jobs/job-context.js'
import { LyapunovRun } from './jobs/lyapunov.js'
import { resultToJson } from './jobs/result-json.js'
import { createMatrixStore } from './matrices/store.js'

/** Longest unit before the kit warns: a worker's heartbeat cannot be written during a unit. */
const SLOW_UNIT_MS = 1000
/** A fraction may differ from "1" by this much at the end (it is often a ratio of floats). */
const FRACTION_EPSILON = 1e-9

/** What a child is asked to do: run from `checkpoint` (or the start), until `stopAfter` units (or the end). */
interface Task { url: string, params: Record<string, unknown>, checkpoint: Checkpoint | null, stopAfter: number | null }

/** What a child reports. */
interface Report {
  /** Units done by this process. */
  units: number
  /** Fraction right after create(), and at the end of this process. */
  firstFraction: number
  lastFraction: number
  /** First place the fraction went back or left 0..1 within this process. */
  fractionProblem: string | null
  longestUnitMs: number
  checkpoint: Checkpoint | null
  /** The result as JSON, when the run finished here. */
  result: string | null
  error: string | null
}

// ---------------------------------------------------------------------------------------------------------
// Child: one process of a run

async function runTask (task: Task): Promise<Report> {
  // A worker warms mathjs up while it waits for its job (its first calls build their dispatch); so does the kit,
  // so the longest unit it reports is the one a worker would see.
  const warm = new LyapunovRun({ n: 40, steps: 1, seed: 0 })
  while (!warm.finished) warm.advance()
  const report: Report = { units: 0, firstFraction: NaN, lastFraction: NaN, fractionProblem: null, longestUnitMs: 0, checkpoint: null, result: null, error: null }
  try {
    const mod = await import(task.url) as { default?: unknown }
    const { definition } = checkDefinition(mod.default, createAjv())
    const quiet = { info () {}, warn () {}, error () {} }
    // Input matrices come from the database DB_PATH names (read only); result matrices go to a scratch database of
    // this process, where the first one stored is always id 1, so two runs' results compare bit for bit.
    const scratch = new Database(':memory:')
    migrate(scratch)
    scratch.pragma('foreign_keys = OFF') // result matrices belong to no job row here
    const inputs = createMatrixStore(process.env.DB_PATH ? openDb(process.env.DB_PATH) : scratch)
    const run = await definition.create(task.params, task.checkpoint ?? undefined, createJobContext(quiet, inputs))
    let fraction = run.fraction
    report.firstFraction = fraction
    const checkFraction = (): void => {
      const now = run.fraction
      if (report.fractionProblem === null) {
        if (!(now >= 0 && now <= 1)) report.fractionProblem = `fraction ${now} outside 0..1 after unit ${report.units}`
        else if (now < fraction) report.fractionProblem = `fraction went back from ${fraction} to ${now} at unit ${report.units}`
      }
      fraction = now
    }
    checkFraction()
    while (!run.finished && (task.stopAfter === null || report.units < task.stopAfter)) {
      const t = performance.now()
      const unit = run.advance()
      if (unit) await unit
      report.longestUnitMs = Math.max(report.longestUnitMs, performance.now() - t)
      report.units++
      checkFraction()
    }
    report.lastFraction = run.fraction
    if (run.finished) report.result = resultToJson(run.result(createResultContext(0, createMatrixStore(scratch))))
    else report.checkpoint = run.checkpoint()
    await run.close?.()
  } catch (err) {
    report.error = (err as Error)?.stack ?? String(err)
  }
  return report
}

// ---------------------------------------------------------------------------------------------------------
// Parent: the two runs and the verdict

const SELF = fileURLToPath(import.meta.url)

function inChild (task: Task, timeoutMs: number): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = fork(SELF, ['--child'], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    let report: Report | null = null
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`a run process took more than ${timeoutMs / 1000} s (does advance() return? does the run finish?)`))
    }, timeoutMs)
    child.on('message', (m) => { report = m as Report })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (report) resolve(report)
      else reject(new Error(`a run process exited (${signal ?? code}) without reporting`))
    })
    child.send(task)
  })
}

/** The first place two JSON values differ, bit for bit for numbers; null when identical. */
export function firstDifference (a: unknown, b: unknown, path = 'result'): string | null {
  if (typeof a === 'number' && typeof b === 'number') return Object.is(a, b) ? null : `${path}: ${a} ≠ ${b}`
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') {
    return a === b ? null : `${path}: ${JSON.stringify(a)} ≠ ${JSON.stringify(b)}`
  }
  if (Array.isArray(a) !== Array.isArray(b)) return `${path}: array ≠ object`
  const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)])
  for (const key of keys) {
    const d = firstDifference((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], Array.isArray(a) ? `${path}[${key}]` : `${path}.${key}`)
    if (d) return d
  }
  return null
}

const fmtBytes = (n: number): string => n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`

/** Runs the whole check; prints the report; returns the exit code. */
export async function checkJobType (args: string[], print: (line: string) => void = console.log): Promise<number> {
  const positional = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'))
  const option = (name: string, fallback: number): number => {
    const i = args.indexOf(`--${name}`)
    return i >= 0 ? Number(args[i + 1]) : fallback
  }
  const [target, paramsJson = '{}'] = positional
  if (!target) {
    print('usage: npm run check-job-type -- <module.js | built-in name> \'<params JSON>\' [--cuts 3] [--timeout 600]')
    return 2
  }
  const cuts = option('cuts', 3)
  const timeoutMs = option('timeout', 600) * 1000
  const url = BUILT_IN_TYPES.includes(target) ? builtInModule(target).href : pathToFileURL(resolve(target)).href

  let params: Record<string, unknown>
  let name: string
  let measurements: readonly string[] = []
  try {
    const { definition, validate } = checkDefinition((await import(url) as { default?: unknown }).default, createAjv())
    name = definition.name
    measurements = definition.measurements ?? []
    params = JSON.parse(paramsJson)
    if (!validate(params)) throw new Error(`params ${validate.errors?.[0]?.instancePath || ''} ${validate.errors?.[0]?.message}`)
    params = definition.prepare ? definition.prepare(params) : params
  } catch (err) {
    print(`FAIL  cannot use ${target}: ${(err as Error).message}`)
    return 1
  }
  print(`job type ${name} (${url.replace(/^file:\/\//, '')})`)
  print(`params  ${JSON.stringify(params)}`)
  const failures: string[] = []

  // 1. Uninterrupted.
  const whole = await inChild({ url, params, checkpoint: null, stopAfter: null }, timeoutMs).catch((err: Error) => err)
  if (whole instanceof Error || whole.error) {
    print(`FAIL  uninterrupted run: ${whole instanceof Error ? whole.message : whole.error}`)
    return 1
  }
  print(`run 1 uninterrupted: ${whole.units} units, result ${whole.result}`)
  if (whole.fractionProblem) failures.push(`uninterrupted run: ${whole.fractionProblem}`)

  // 2. Cut at random units, each part in a new process restoring the previous one's checkpoint.
  const points = new Set<number>()
  const wanted = Math.min(cuts, Math.max(0, whole.units - 1))
  while (points.size < wanted) points.add(randomInt(1, whole.units))
  const stops = [...points].sort((a, b) => a - b)
  let checkpoint: Checkpoint | null = null
  let done = 0
  let lastFraction = 0
  let longest = whole.longestUnitMs
  const sizes: number[] = []
  let final: Report | null = null
  for (const stop of [...stops, null]) {
    const part: Report | Error = await inChild({ url, params, checkpoint, stopAfter: stop === null ? null : stop - done }, timeoutMs).catch((err: Error) => err)
    if (part instanceof Error || part.error) {
      failures.push(`${checkpoint ? `resuming from the checkpoint at unit ${done}` : 'first part'}: ${part instanceof Error ? part.message : part.error}`)
      break
    }
    if (part.firstFraction < lastFraction) failures.push(`fraction went back across a restore, from ${lastFraction} to ${part.firstFraction} (unit ${done})`)
    if (part.fractionProblem) failures.push(`after ${done} units: ${part.fractionProblem}`)
    longest = Math.max(longest, part.longestUnitMs)
    lastFraction = part.lastFraction
    done += part.units
    if (part.checkpoint) {
      sizes.push(part.checkpoint.state.byteLength)
      checkpoint = part.checkpoint
    } else {
      final = part
      break
    }
  }
  print(`run 2 cut after units ${stops.join(', ') || '(none: the run has a single unit)'}, ${stops.length + 1} processes${final ? `, result ${final.result}` : ''}`)
  if (final) {
    const answer = (json: string): Record<string, unknown> => {
      const value = JSON.parse(json)
      for (const field of measurements) delete value[field]
      return value
    }
    const difference = firstDifference(answer(whole.result as string), answer(final.result as string))
    if (difference) failures.push(`results differ: ${difference}`)
    else print(`ok    results bit-identical${measurements.length ? ` (measurements ${measurements.join(', ')} left out)` : ''}`)
    if (done !== whole.units) failures.push(`the resumed run took ${done} units, the uninterrupted one ${whole.units}`)
    if (Math.abs(final.lastFraction - 1) > FRACTION_EPSILON || Math.abs(whole.lastFraction - 1) > FRACTION_EPSILON) {
      failures.push(`fraction ends at ${whole.lastFraction} (uninterrupted) / ${final.lastFraction} (resumed), not 1`)
    }
  }
  if (!failures.some((f) => f.includes('fraction'))) print('ok    fraction never went back and reached 1')
  print(`${longest > SLOW_UNIT_MS ? 'WARN' : 'ok  '}  longest unit ${longest.toFixed(1)} ms${longest > SLOW_UNIT_MS ? ` (above ${SLOW_UNIT_MS} ms: the heartbeat waits for a unit; make units smaller)` : ''}`)
  if (sizes.length > 0) print(`info  checkpoint sizes ${fmtBytes(Math.min(...sizes))} .. ${fmtBytes(Math.max(...sizes))}`)
  for (const f of failures) print(`FAIL  ${f}`)
  print(failures.length === 0 ? `PASS  ${name} conforms` : `FAIL  ${name}: ${failures.length} problem(s)`)
  return failures.length === 0 ? 0 : 1
}

if (process.argv[2] === '--child') {
  process.once('message', (task) => {
    runTask(task as Task).then((report) => process.send?.(report, () => process.exit(0)))
  })
} else if (process.argv[1] && resolve(process.argv[1]) === SELF) {
  process.exitCode = await checkJobType(process.argv.slice(2))
}
