/** The file formats matrices are uploaded and downloaded in, by name. */
import type { Matrix64, MatrixLimits } from '../matrix.js'
import { parseCsvMatrix, writeCsvMatrix } from './csv.js'
import { parseJsonMatrix, writeJsonMatrix } from './json.js'
import { parseMtxMatrix, writeMtxMatrix } from './mtx.js'
import { parseNpyMatrix, writeNpyMatrix } from './npy.js'

export const MATRIX_FORMATS = ['json', 'csv', 'mtx', 'npy'] as const
export type MatrixFormat = (typeof MATRIX_FORMATS)[number]

/** A format: how to read it, how to write it, what it is called on the wire and on disk. */
export interface FormatCodec {
  /** Content-Type of a download. */
  contentType: string
  /** File name extension of a download. */
  extension: string
  parse: (body: Uint8Array, limits: MatrixLimits) => Matrix64
  write: (m: Matrix64, name: string) => Iterable<string | Buffer>
  /** Text formats take up to this many body bytes per byte of float64 data (a number and its separator). */
  textual: boolean
}

export const FORMATS: Readonly<Record<MatrixFormat, FormatCodec>> = {
  json: { contentType: 'application/json', extension: 'json', parse: parseJsonMatrix, write: (m) => writeJsonMatrix(m), textual: true },
  csv: { contentType: 'text/csv; charset=utf-8', extension: 'csv', parse: parseCsvMatrix, write: (m) => writeCsvMatrix(m), textual: true },
  mtx: { contentType: 'application/x-matrix-market', extension: 'mtx', parse: parseMtxMatrix, write: writeMtxMatrix, textual: true },
  npy: { contentType: 'application/octet-stream', extension: 'npy', parse: parseNpyMatrix, write: (m) => writeNpyMatrix(m), textual: false }
}

/** Media types an upload may be sent as, and the format each means. */
const BY_CONTENT_TYPE: Record<string, MatrixFormat> = {
  'application/json': 'json',
  'text/json': 'json',
  'text/csv': 'csv',
  'application/csv': 'csv',
  'application/x-matrix-market': 'mtx',
  'text/x-matrix-market': 'mtx',
  'application/octet-stream': 'npy',
  'application/x-npy': 'npy'
}

/** The format a Content-Type names (parameters such as charset ignored), or undefined. */
export function formatOfContentType (contentType: string | undefined): MatrixFormat | undefined {
  if (!contentType) return undefined
  return BY_CONTENT_TYPE[contentType.split(';')[0].trim().toLowerCase()]
}

/** Body bytes a text upload may take per byte of float64 data: up to 24 characters and a separator per number. */
export const TEXT_BYTES_PER_DATA_BYTE = 4
