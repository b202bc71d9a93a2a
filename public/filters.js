// The jobs filter of the dashboard, kept in the page's query string so a reload, the back button and a shared link
// give the same view. Pure functions (no DOM), tested by test/public/filters.test.ts.
//
//   ?status=failed&status=canceled&type=matmul&name=big&createdFrom=2026-12-01T00:00:00.000Z&createdTo=…
//
// The API (GET /api/jobs, GET /api/jobs/counts, POST /api/jobs/bulk) takes the same fields.

export const STATUSES = ['pending', 'running', 'done', 'failed', 'canceled']

/** Which statuses each bulk action applies to. */
export const BULK_APPLIES = {
  cancel: ['pending', 'running'],
  retry: ['failed', 'canceled'],
  delete: ['done', 'failed', 'canceled']
}

/** The filter a query string describes; whatever is not understood is left out. */
export function parseFilter (search) {
  const params = new URLSearchParams(search)
  const filter = {}
  const status = params.getAll('status').flatMap((s) => s.split(',')).filter((s) => STATUSES.includes(s))
  if (status.length) filter.status = STATUSES.filter((s) => status.includes(s))
  const type = params.get('type')
  if (type && /^[a-z][a-z0-9-]{0,39}$/.test(type)) filter.type = type
  const name = params.get('name')
  if (name) filter.name = name.slice(0, 200)
  for (const key of ['createdFrom', 'createdTo']) {
    const value = params.get(key)
    if (value && Number.isFinite(Date.parse(value))) filter[key] = new Date(value).toISOString()
  }
  return filter
}

/** The query string of a filter ('' for none), fields in a fixed order. */
export function filterQuery (filter) {
  const params = new URLSearchParams()
  for (const status of filter.status ?? []) params.append('status', status)
  for (const key of ['type', 'name', 'createdFrom', 'createdTo']) if (filter[key]) params.set(key, filter[key])
  return params.toString()
}

/** Lower case for A–Z only: the server's LIKE folds ASCII letters alone, and the page must select what it does. */
const asciiLower = (text) => text.replace(/[A-Z]/g, (c) => c.toLowerCase())

/** Whether a job (as the API returns it) is one the filter selects. */
export function matchesFilter (job, filter) {
  if (filter.status?.length && !filter.status.includes(job.status)) return false
  if (filter.type && job.type !== filter.type) return false
  if (filter.name && !asciiLower(job.name ?? '').includes(asciiLower(filter.name))) return false
  const created = Date.parse(job.createdAt)
  if (filter.createdFrom && created < Date.parse(filter.createdFrom)) return false
  if (filter.createdTo && created >= Date.parse(filter.createdTo)) return false
  return true
}

/** How many jobs a bulk action would change, from the counts per status (GET /api/jobs/counts) and the filter. */
export function bulkCount (action, counts, filter) {
  return BULK_APPLIES[action]
    .filter((s) => !filter.status?.length || filter.status.includes(s))
    .reduce((sum, s) => sum + (counts?.[s] ?? 0), 0)
}

/** An ISO time as a datetime-local input's value, in the browser's time zone (minutes). */
export function localInputValue (iso) {
  if (!iso) return ''
  const d = new Date(iso)
  const pad = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`
}

/** A datetime-local input's value (local time) as ISO; undefined when empty or not a time. */
export function isoOfLocalInput (value) {
  if (!value) return undefined
  const ms = new Date(value).getTime()
  return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined
}
