import type { JobStatus } from './types.js'

/**
 * Which jobs a list, a count or a bulk action is about. Every field is optional; all given ones must hold.
 * Times are epoch ms.
 */
export interface JobFilter {
  /** Any of these statuses (none given: any status). */
  status?: readonly JobStatus[]
  /** Exactly this job type. */
  type?: string
  /** The name contains this text (case-insensitive for ASCII letters). */
  name?: string
  /** Created at or after this time. */
  createdFrom?: number
  /** Created before this time. */
  createdTo?: number
  /** The run of ids created in the range above, resolved once (store.resolveCreated) by an action that reads many
   *  pages, so each page does not search the range again. Never from a request. */
  createdIds?: { min: number, max: number }
}

/** A filter's conditions other than status, as SQL over `jobs` with named binds, and the binds. */
export interface FilterSql {
  /** `AND …` conditions to append to a WHERE clause; '' for none. */
  where: string
  /** Values of the named binds in `where`. */
  binds: Record<string, string | number>
  /** Names the conditions present, so a statement can be prepared once per shape. */
  shape: string
}

/** `text` as a LIKE pattern matching any name that contains it (%, _ and \ taken literally). */
export const containsPattern = (text: string): string => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/**
 * The lowest or highest id created in a range, read on the created_at index: without INDEXED BY the planner may walk
 * the table in id order to find a min or max, which reads every row when the range holds none.
 */
export const createdIdSql = (which: 'min' | 'max', range: readonly string[]): string =>
  `SELECT ${which}(id) FROM jobs INDEXED BY jobs_created WHERE ${range.join(' AND ')}`

/**
 * The SQL of a filter's conditions except status (each status is queried on its own, see store.list). For a page
 * (newest first); `forCount` gives plain conditions instead, which a count answers on (status, created_at).
 */
export function filterSql (filter: JobFilter, forCount = false): FilterSql {
  const parts: string[] = []
  const binds: Record<string, string | number> = {}
  let shape = ''
  if (filter.type !== undefined) {
    parts.push('type = @fType')
    binds.fType = filter.type
    shape += 't'
  }
  if (filter.name !== undefined && filter.name !== '') {
    parts.push("name LIKE @fName ESCAPE '\\'")
    binds.fName = containsPattern(filter.name)
    shape += 'n'
  }
  // A creation range is read as the range of ids created in it (found on the created_at index: ids follow
  // insertion, so the jobs of a range are a run of ids), and then checked row by row, which keeps it exact when a
  // clock went back. `+created_at` keeps the planner on the id order (no sort of the whole range for one page).
  const range: string[] = []
  if (filter.createdFrom !== undefined) {
    range.push('created_at >= @fFrom')
    binds.fFrom = filter.createdFrom
    shape += 'f'
  }
  if (filter.createdTo !== undefined) {
    range.push('created_at < @fTo')
    binds.fTo = filter.createdTo
    shape += 'u'
  }
  if (range.length > 0 && forCount) parts.push(...range)
  else if (range.length > 0 && filter.createdIds) {
    parts.push('id >= @fIdMin', 'id <= @fIdMax', ...range.map((r) => `+${r}`))
    binds.fIdMin = filter.createdIds.min
    binds.fIdMax = filter.createdIds.max
    shape += 'r'
  } else if (range.length > 0) {
    parts.push(`id >= coalesce((${createdIdSql('min', range)}), 0)`, `id <= coalesce((${createdIdSql('max', range)}), 0)`,
      ...range.map((r) => `+${r}`))
  }
  return { where: parts.map((p) => ` AND ${p}`).join(''), binds, shape }
}
