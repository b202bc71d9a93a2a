/**
 * A job's result as stored: JSON, and only what JSON can say exactly. JSON.stringify would throw on a BigInt or a
 * cycle with a message naming neither the job nor the place, and would silently write NaN and ±Infinity as null:
 * a result that reads as "no value" where the computation produced a wrong one. Both are refused here, with the
 * path of the offending value. (undefined and functions are left out, as JSON.stringify does.)
 */
export function resultToJson (result: unknown): string {
  if (typeof result !== 'object' || result === null || Array.isArray(result)) {
    throw new Error(`result() must return a plain object, got ${result === null ? 'null' : Array.isArray(result) ? 'an array' : typeof result}`)
  }
  const seen = new Set<object>()
  const walk = (value: unknown, path: string): void => {
    if (typeof value === 'bigint') throw new Error(`result is not JSON: ${path} is a BigInt`)
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error(`result is not JSON: ${path} is ${value}`)
    if (typeof value !== 'object' || value === null) return
    if (seen.has(value)) throw new Error(`result is not JSON: ${path} refers back to itself (a cycle)`)
    seen.add(value)
    if (ArrayBuffer.isView(value)) throw new Error(`result is not JSON: ${path} is a typed array; convert it with Array.from`)
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${path}[${i}]`))
    else for (const [k, v] of Object.entries(value)) walk(v, `${path}.${k}`)
    seen.delete(value)
  }
  walk(result, 'result')
  return JSON.stringify(result)
}
