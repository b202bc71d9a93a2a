import { Readable } from 'node:stream'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import { FORMATS, formatOfContentType, MATRIX_FORMATS, type MatrixFormat, TEXT_BYTES_PER_DATA_BYTE } from '../matrices/formats/index.js'
import { npyHeader } from '../matrices/formats/npy.js'
import { MatrixInputError, MatrixTooLargeError, viewCanonicalBytes } from '../matrices/matrix.js'
import { toMatrixMeta } from '../matrices/store.js'
import type { AsyncMatrixStore } from '../store/matrix-store.js'
import { ErrorReply } from './schemas.js'

/** What the matrix routes need. */
export interface MatrixRoutesOptions {
  matrices: AsyncMatrixStore
  config: { maxMatrixBytes: number, maxMatrixStorageBytes?: number }
}

const Format = Type.Unsafe<MatrixFormat>({ type: 'string', enum: [...MATRIX_FORMATS] })

const MatrixSchema = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  rows: Type.Integer(),
  cols: Type.Integer(),
  sha256: Type.String({ description: 'sha256 (hex) of the float64 little-endian, row-major bytes' }),
  bytes: Type.Integer({ description: 'rows × cols × 8' }),
  createdAt: Type.String({ format: 'date-time' }),
  jobId: Type.Unsafe<number | null>({ type: ['integer', 'null'], description: 'the job whose result this is; null for an upload' })
}, { description: 'a stored matrix (metadata; the numbers are at /api/matrices/{id}/data)' })

const MatrixList = Type.Object({
  matrices: Type.Array(MatrixSchema),
  nextCursor: Type.Unsafe<number | null>({ type: ['integer', 'null'] })
}, { description: 'a page of matrices, newest first' })

const IdParams = Type.Object({ id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'matrix id' }) })

const UploadQuery = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'shown in the list; "matrix" when absent' })),
  format: Type.Optional({ ...Format, description: 'json, csv, mtx or npy; overrides the Content-Type' })
}, { additionalProperties: false })

const ListQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  cursor: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'nextCursor of the previous page' }))
}, { additionalProperties: false })

const DataQuery = Type.Object({ format: Type.Optional({ ...Format, default: 'json', description: 'json (default), csv, mtx or npy' }) }, { additionalProperties: false })

const PreviewQuery = Type.Object({
  rows: Type.Integer({ minimum: 1, maximum: 32, default: 8 }),
  cols: Type.Integer({ minimum: 1, maximum: 32, default: 8 })
}, { additionalProperties: false })

const Preview = Type.Object({
  id: Type.Integer(),
  rows: Type.Integer({ description: 'rows of the whole matrix' }),
  cols: Type.Integer({ description: 'columns of the whole matrix' }),
  data: Type.Array(Type.Array(Type.Number()), { description: 'the top-left corner, row by row' })
}, { description: 'the top-left corner of a matrix' })

const Download = { type: 'string', description: 'the matrix in the requested format (streamed, with Content-Disposition)' } as const
const Deleted = { type: 'null', description: 'deleted' } as const
const notFound = (id: number) => ({ statusCode: 404, error: 'Not Found', message: `matrix ${id} not found` })

/** A file name made of safe characters only (the matrix name is user text). */
function fileName (name: string, id: number, extension: string): string {
  const base = name.replace(/\.(json|csv|mtx|npy)$/i, '').replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(0, 100)
  return `${base || `matrix-${id}`}.${extension}`
}

/** /api/matrices: upload, list, read, download, preview, delete. */
export const matrixRoutes: FastifyPluginAsync<MatrixRoutesOptions> = async (instance, { matrices, config }) => {
  const app = instance.withTypeProvider<TypeBoxTypeProvider>()
  const limits = { maxBytes: config.maxMatrixBytes }

  // Uploads in their own context: there, and only there, any body is taken as raw bytes (the rest of the API
  // answers 415 to anything but JSON). The limit lets a text format spend ~4 bytes of text per byte of float64;
  // each parser then checks the matrix itself against MAX_MATRIX_BYTES.
  await app.register(async (upload) => {
    upload.removeAllContentTypeParsers()
    upload.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => { done(null, body) })
    upload.withTypeProvider<TypeBoxTypeProvider>().post('/api/matrices', {
      // The body is a file (CSV, Matrix Market, .npy or JSON): src/http/origin.ts lets this route take other types
      // than JSON; cross-site requests are still refused there.
      config: { fileUpload: true },
      bodyLimit: TEXT_BYTES_PER_DATA_BYTE * limits.maxBytes + 65536,
      schema: {
        summary: 'Upload a matrix',
        description: 'The body is the file: JSON (array of rows), CSV, Matrix Market (.mtx) or NumPy (.npy). The format comes from ?format= or the Content-Type (application/json, text/csv, application/x-matrix-market, application/octet-stream for .npy). 400 names what is wrong and where; 413 beyond MAX_MATRIX_BYTES or 8192 rows or columns.',
        tags: ['matrices'],
        querystring: UploadQuery,
        response: { 201: MatrixSchema, 400: ErrorReply, 413: ErrorReply, 415: ErrorReply }
      }
    }, async (req, reply) => {
      const format = req.query.format ?? formatOfContentType(req.headers['content-type'])
      if (!format) {
        return reply.code(415).send({
          statusCode: 415,
          error: 'Unsupported Media Type',
          message: `cannot tell the format from Content-Type "${req.headers['content-type'] ?? ''}"; add ?format=json|csv|mtx|npy`
        })
      }
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)
      let parsed
      try {
        parsed = FORMATS[format].parse(body, limits)
      } catch (err) {
        if (err instanceof MatrixInputError || err instanceof MatrixTooLargeError) {
          req.log.info({ event: 'matrix-refused', format, bytes: body.length, reason: err.message }, 'matrix upload refused')
          return reply.code(err.statusCode).send({
            statusCode: err.statusCode,
            error: err.statusCode === 413 ? 'Payload Too Large' : 'Bad Request',
            message: err.message
          })
        }
        throw err
      }
      // A small file can declare a large matrix (a sparse Matrix Market file is stored dense): the total is capped.
      const used = (await matrices.totals()).bytes
      const adding = parsed.rows * parsed.cols * 8
      const quota = config.maxMatrixStorageBytes ?? Number.POSITIVE_INFINITY
      if (used + adding > quota) {
        return reply.code(413).send({
          statusCode: 413,
          error: 'Payload Too Large',
          message: `matrix storage is full: ${used} of ${quota} bytes used (MAX_MATRIX_STORAGE_BYTES), this matrix needs ${adding}; delete matrices or jobs first`
        })
      }
      const row = await matrices.insert({ ...parsed, name: req.query.name ?? 'matrix' })
      req.log.info({ event: 'matrix-stored', matrixId: row.id, rows: row.rows, cols: row.cols, format }, 'matrix stored')
      return reply.code(201).header('location', `/api/matrices/${row.id}`).send(toMatrixMeta(row))
    })
  })

  app.get('/api/matrices', {
    schema: {
      summary: 'List matrices, newest first',
      description: 'Pages with `limit` and `cursor` (the previous page\'s nextCursor). Never reads the numbers.',
      tags: ['matrices'],
      querystring: ListQuery,
      response: { 200: MatrixList, 400: ErrorReply }
    }
  }, async (req) => {
    const page = await matrices.list(req.query)
    return { matrices: page.matrices.map(toMatrixMeta), nextCursor: page.nextCursor }
  })

  app.get('/api/matrices/:id', {
    schema: { summary: 'Read a matrix\'s metadata', tags: ['matrices'], params: IdParams, response: { 200: MatrixSchema, 400: ErrorReply, 404: ErrorReply } }
  }, async (req, reply) => {
    const row = await matrices.get(req.params.id)
    if (!row) return reply.code(404).send(notFound(req.params.id))
    return toMatrixMeta(row)
  })

  app.get('/api/matrices/:id/data', {
    schema: {
      summary: 'Download a matrix',
      description: 'Streams the matrix as json (default), csv, mtx (array real general) or npy (version 1.0, <f8, C order), with Content-Disposition. Numbers are written in the shortest form that reads back to the same double: uploading a download gives the same sha256.',
      tags: ['matrices'],
      params: IdParams,
      querystring: DataQuery,
      response: { 200: Download, 400: ErrorReply, 404: ErrorReply }
    }
  }, async (req, reply) => {
    const stored = await matrices.loadBytes(req.params.id)
    if (!stored) return reply.code(404).send(notFound(req.params.id))
    const format = req.query.format ?? 'json'
    const codec = FORMATS[format]
    const matrix = { rows: stored.rows, cols: stored.cols, data: viewCanonicalBytes(stored.data) }
    reply
      .header('content-type', codec.contentType)
      .header('content-disposition', `attachment; filename="${fileName(stored.name, stored.id, codec.extension)}"`)
      .header('x-matrix-sha256', stored.sha256)
    if (format === 'npy') reply.header('content-length', npyHeader(stored.rows, stored.cols).length + stored.data.length)
    // Chunks are produced as the socket drains (a pull stream over a generator), never as one whole string.
    // The 200 schema documents the body as text; a stream is sent as it is (cast for the type provider only).
    return reply.send(Readable.from(codec.write(matrix, stored.name)) as unknown as string)
  })

  app.get('/api/matrices/:id/preview', {
    schema: {
      summary: 'The top-left corner of a matrix',
      description: 'At most rows × cols numbers (default 8 × 8, up to 32 × 32), from the top-left corner stored with the matrix: the matrix itself is not read.',
      tags: ['matrices'],
      params: IdParams,
      querystring: PreviewQuery,
      response: { 200: Preview, 400: ErrorReply, 404: ErrorReply }
    }
  }, async (req, reply) => {
    const corner = await matrices.corner(req.params.id, req.query.rows, req.query.cols)
    if (!corner) return reply.code(404).send(notFound(req.params.id))
    return { id: corner.meta.id, rows: corner.meta.rows, cols: corner.meta.cols, data: corner.data }
  })

  app.delete('/api/matrices/:id', {
    schema: {
      summary: 'Delete a matrix',
      description: '409 while a pending or running job uses it. A job\'s result matrix is also deleted with its job.',
      tags: ['matrices'],
      params: IdParams,
      response: { 204: Deleted, 400: ErrorReply, 404: ErrorReply, 409: ErrorReply }
    }
  }, async (req, reply) => {
    await matrices.remove(req.params.id)
    req.log.info({ event: 'matrix-deleted', matrixId: req.params.id }, 'matrix deleted')
    return reply.code(204).send(null)
  })
}
