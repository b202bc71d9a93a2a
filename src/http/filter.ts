import type { JobFilter } from '../jobs/job-filter.js'
import { JOB_STATUSES, type JobStatus } from '../jobs/types.js'
import type { FilterInput } from './schemas.js'

/** A 400 in Fastify's error shape. */
const badRequest = (message: string): Error => Object.assign(new Error(message), { statusCode: 400 })

/**
 * A filter from a query string or a body, schema-checked already (`where` names it in messages: querystring or
 * body/filter). Throws a 400 naming an unknown status, or a time range that ends before it starts.
 */
export function parseFilter (input: FilterInput, where: string): JobFilter {
  const filter: JobFilter = {}
  if (input.status !== undefined) {
    const statuses = input.status.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)
    for (const status of statuses) {
      if (!JOB_STATUSES.includes(status as JobStatus)) {
        throw badRequest(`${where}/status "${status.slice(0, 40)}" is not a status; use ${JOB_STATUSES.join(', ')}`)
      }
    }
    if (statuses.length > 0) filter.status = [...new Set(statuses as JobStatus[])]
  }
  if (input.type !== undefined) filter.type = input.type
  if (input.name !== undefined && input.name !== '') filter.name = input.name
  if (input.createdFrom !== undefined) filter.createdFrom = Date.parse(input.createdFrom)
  if (input.createdTo !== undefined) filter.createdTo = Date.parse(input.createdTo)
  for (const key of ['createdFrom', 'createdTo'] as const) {
    if (filter[key] !== undefined && !Number.isFinite(filter[key])) throw badRequest(`${where}/${key} is not a valid time`)
  }
  if (filter.createdFrom !== undefined && filter.createdTo !== undefined && filter.createdFrom > filter.createdTo) {
    throw badRequest(`${where}/createdFrom must not be later than createdTo`)
  }
  return filter
}
