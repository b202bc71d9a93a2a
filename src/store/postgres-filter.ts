/**
 * A JobFilter (src/jobs/job-filter.ts) as PostgreSQL conditions with positional parameters: the counterpart of its
 * SQLite-flavoured filterSql, with the same meaning.
 *
 * - type: `type = $n` (on jobs_type_id, or jobs_status_type_id per status);
 * - name: contains the text, case-insensitive for ASCII letters only (as SQLite's LIKE), `%`, `_` and `\` literal;
 * - created range: `created_at >= / <` the times (epoch ms); with `createdIds` (resolveCreated), also the run of
 *   ids created in it, so a walk by id stops at the run's ends. Times are compared at the millisecond, as rows
 *   show them (floor of created_at), so a range built from a row's created_at selects the same rows as on SQLite.
 * Statuses are not part of it: list and counts handle them (counts ignore them, as on SQLite).
 */
import { containsPattern, type JobFilter } from '../jobs/job-filter.js'

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'
const LOWER = 'abcdefghijklmnopqrstuvwxyz'

/** A created range as conditions on created_at that an index on it answers, exact at the millisecond: for an
 *  integer bound b, floor(ms) >= b ⇔ created_at >= b ms and floor(ms) < b ⇔ created_at < b ms; a fractional
 *  bound is rounded up first (floor(ms) is an integer). */
const rangeSql = (filter: JobFilter, bind: (v: unknown) => string): string[] => {
  const out: string[] = []
  const at = (ms: number): string => `to_timestamp(${bind(Math.ceil(ms))}::float8 / 1000)`
  if (filter.createdFrom !== undefined) out.push(`created_at >= ${at(filter.createdFrom)}`)
  if (filter.createdTo !== undefined) out.push(`created_at < ${at(filter.createdTo)}`)
  return out
}

/**
 * `AND …` conditions of the filter other than status, appended to a WHERE clause over `jobs` (unaliased); values
 * are pushed onto `params` and referred to by position.
 */
export function pgFilterSql (filter: JobFilter, params: unknown[]): string {
  const bind = (v: unknown): string => `$${params.push(v)}`
  const parts: string[] = []
  if (filter.type !== undefined) parts.push(`type = ${bind(filter.type)}`)
  if (filter.name !== undefined && filter.name !== '') {
    parts.push(`translate(name, '${UPPER}', '${LOWER}') LIKE translate(${bind(containsPattern(filter.name))}, '${UPPER}', '${LOWER}') ESCAPE '\\'`)
  }
  const range = rangeSql(filter, bind)
  if (range.length > 0 && filter.createdIds) {
    parts.push(`id >= ${bind(filter.createdIds.min)}`, `id <= ${bind(filter.createdIds.max)}`)
  }
  parts.push(...range)
  return parts.map((p) => ` AND ${p}`).join('')
}

/** The lowest and highest id created in the filter's range (null for none), as one SELECT's two columns. */
export function pgCreatedIdsSql (filter: JobFilter, params: unknown[]): string {
  const bind = (v: unknown): string => `$${params.push(v)}`
  const where = rangeSql(filter, bind).join(' AND ')
  return `SELECT min(id) AS min, max(id) AS max FROM jobs WHERE ${where}`
}
