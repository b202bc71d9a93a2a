import { basename } from 'node:path'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { JobTypeCatalog } from '../job-types/catalog.js'
import { JobTypeList } from './schemas.js'

/** GET /api/job-types: what can be submitted, with each type's params schema; broken modules with their error. */
export const jobTypeRoutes: FastifyPluginAsync<{ jobTypes: JobTypeCatalog }> = async (instance, { jobTypes }) => {
  const app = instance.withTypeProvider<TypeBoxTypeProvider>()
  const list = {
    types: jobTypes.types.map((t) => t.definition && !t.error
      ? { name: t.name, title: t.definition.title, description: t.definition.description, params: t.definition.params, builtIn: t.builtIn }
      : { name: t.name, title: t.name, description: `module ${basename(t.file)}`, params: { type: 'object' }, builtIn: t.builtIn, error: t.error ?? 'unusable' })
  }
  app.get('/api/job-types', {
    schema: {
      summary: 'List job types',
      description: 'Built-in types and those loaded from JOB_TYPES_DIR, each with the JSON Schema of its params. A module that could not be loaded is listed with its `error`.',
      tags: ['jobs'],
      response: { 200: JobTypeList }
    }
  }, async () => list)
}
