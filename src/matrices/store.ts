/**
 * All matrix SQL, each statement prepared once (when the store is made, or at first use with `eager: false`). Used
 * by the server (uploads, downloads, listing, the submit check) and by workers (a job's inputs, its result).
 * Synchronous, like the job store: a write that reads first runs in one immediate transaction.
 */
import { type Db, statementPreparer } from '../db.js'
import type { StoreOptions } from '../jobs/store.js'
import { ConflictError, NotFoundError } from '../errors.js'
import { canonicalBytes, fromCanonicalBytes, type Matrix64, matrixSha256 } from './matrix.js'

/** A row of `matrices` without its data, as stored (snake_case, epoch ms). */
export interface MatrixRow {
  id: number
  name: string
  rows: number
  cols: number
  /** sha256 (hex) of the canonical bytes: float64 little-endian, row-major. */
  sha256: string
  /** rows × cols × 8. */
  bytes: number
  created_at: number
  /** The job whose result this is, or null for an upload. */
  job_id: number | null
}

/** A matrix's metadata as the API shows it. */
export interface MatrixMeta {
  id: number
  name: string
  rows: number
  cols: number
  sha256: string
  bytes: number
  createdAt: string
  jobId: number | null
}

/** A stored matrix with its numbers (the shape of the job contract's StoredMatrix). */
export interface LoadedMatrix extends Matrix64 {
  id: number
  name: string
}

/** A page of matrices, newest first; pass `nextCursor` back as `cursor` for the next page. */
export interface MatrixPage {
  matrices: MatrixRow[]
  nextCursor: number | null
}

/** Statuses in which a job may still read its input matrices. */
const ACTIVE = "('pending', 'running')"

/** Metadata row → API object; the one place the API format is decided. */
export function toMatrixMeta (row: MatrixRow): MatrixMeta {
  return {
    id: row.id,
    name: row.name,
    rows: row.rows,
    cols: row.cols,
    sha256: row.sha256,
    bytes: row.bytes,
    createdAt: new Date(row.created_at).toISOString(),
    jobId: row.job_id
  }
}

export type MatrixStore = ReturnType<typeof createMatrixStore>

/** Rows and columns of the stored top-left corner, the most a preview shows. */
export const CORNER = 32

/** The stored top-left corner of a matrix: at most CORNER × CORNER, float64 LE row-major. */
export function cornerBytes (m: Matrix64): Buffer {
  const r = Math.min(m.rows, CORNER)
  const c = Math.min(m.cols, CORNER)
  const corner = new Float64Array(r * c)
  for (let i = 0; i < r; i++) corner.set(m.data.subarray(i * m.cols, i * m.cols + c), i * c)
  return canonicalBytes(corner)
}

/** The matrix store over an open, migrated database. */
export function createMatrixStore (db: Db, clock: () => number = Date.now, { eager = true }: StoreOptions = {}) {
  const prepared = statementPreparer(eager)
  const META = 'id, name, rows, cols, sha256, bytes, created_at, job_id'
  const insertStmt = prepared(() => db.prepare<{ name: string, rows: number, cols: number, sha256: string, bytes: number, now: number, jobId: number | null, corner: Buffer, data: Buffer }>(`
    INSERT INTO matrices (name, rows, cols, sha256, bytes, created_at, job_id, corner, data)
    VALUES (@name, @rows, @cols, @sha256, @bytes, @now, @jobId, @corner, @data)`))
  const getStmt = prepared(() => db.prepare<[number], MatrixRow>(`SELECT ${META} FROM matrices WHERE id = ?`))
  const shapeStmt = prepared(() => db.prepare<[number], { rows: number, cols: number }>('SELECT rows, cols FROM matrices WHERE id = ?'))
  const dataStmt = prepared(() => db.prepare<[number], MatrixRow & { data: Buffer }>(`SELECT ${META}, data FROM matrices WHERE id = ?`))
  const cornerStmt = prepared(() => db.prepare<[number], { corner: Buffer }>('SELECT corner FROM matrices WHERE id = ?'))
  const listStmt = prepared(() => db.prepare<{ cursor: number, limit: number }, MatrixRow>(
    `SELECT ${META} FROM matrices WHERE id < @cursor ORDER BY id DESC LIMIT @limit`))
  // The job parameters hold the ids: matmul {"matrices": [ids]}, matpow {"matrix": id}.
  const usedByStmt = prepared(() => db.prepare<{ id: number }, { id: number, status: string }>(`
    SELECT id, status FROM jobs
    WHERE status IN ${ACTIVE} AND (
      (type = 'matpow' AND json_extract(params, '$.matrix') = @id)
      OR (type = 'matmul' AND EXISTS (SELECT 1 FROM json_each(jobs.params, '$.matrices') WHERE value = @id)))
    ORDER BY id LIMIT 1`))
  const deleteStmt = prepared(() => db.prepare<[number]>('DELETE FROM matrices WHERE id = ?'))
  const countStmt = prepared(() => db.prepare<[], { n: number, bytes: number }>('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM matrices'))

  const insert = (m: Matrix64 & { name: string }, jobId: number | null): MatrixRow => {
    const sha256 = matrixSha256(m.data)
    const id = Number(insertStmt().run({
      name: m.name, rows: m.rows, cols: m.cols, sha256, bytes: m.rows * m.cols * 8, now: clock(), jobId, corner: cornerBytes(m), data: canonicalBytes(m.data)
    }).lastInsertRowid)
    return getStmt().get(id) as MatrixRow
  }

  return {
    /** Stores an uploaded matrix; returns its row. */
    insert (m: Matrix64 & { name: string }): MatrixRow {
      return insert(m, null)
    },

    /**
     * Stores a matrix owned by a job (deleted with it); returns its id. A single statement with no transaction of
     * its own, so the worker can call it inside the transaction that writes the job's result.
     */
    insertOwned (jobId: number, m: Matrix64 & { name: string }): number {
      return insert(m, jobId).id
    },

    /** Metadata, without reading the data. */
    get (id: number): MatrixRow | undefined {
      return getStmt().get(id)
    },

    /** Shape of a matrix, or undefined (the job types' submit check). */
    shape (id: number): { rows: number, cols: number } | undefined {
      return shapeStmt().get(id)
    },

    /** A matrix with its numbers; NotFoundError when there is none with that id. */
    load (id: number): LoadedMatrix {
      const row = dataStmt().get(id)
      if (!row) throw new NotFoundError(`matrix ${id} not found`)
      return { id: row.id, name: row.name, rows: row.rows, cols: row.cols, data: fromCanonicalBytes(row.data) }
    },

    /** Metadata and the stored bytes as they are (for downloads: no conversion, one copy in memory). */
    loadBytes (id: number): (MatrixRow & { data: Buffer }) | undefined {
      return dataStmt().get(id)
    },

    /** The top-left corner, at most `rows` × `cols` (≤ CORNER each), from the stored corner: the data is not read. */
    corner (id: number, rows: number, cols: number): { meta: MatrixRow, data: number[][] } | undefined {
      const meta = getStmt().get(id)
      if (!meta) return undefined
      const width = Math.min(meta.cols, CORNER)
      const r = Math.min(rows, meta.rows, CORNER)
      const c = Math.min(cols, width)
      const stored = fromCanonicalBytes((cornerStmt().get(id) as { corner: Buffer }).corner)
      const data = Array.from({ length: r }, (_, i) => Array.from(stored.subarray(i * width, i * width + c)))
      return { meta, data }
    },

    /** A page of matrices, newest first. */
    list (options: { limit: number, cursor?: number }): MatrixPage {
      const rows = listStmt().all({ cursor: options.cursor ?? Number.MAX_SAFE_INTEGER, limit: options.limit + 1 })
      const more = rows.length > options.limit
      if (more) rows.pop()
      return { matrices: rows, nextCursor: more ? rows[rows.length - 1].id : null }
    },

    /** The id of a pending or running job that reads this matrix, if any. */
    usedBy (id: number): { id: number, status: string } | undefined {
      return usedByStmt().get({ id })
    },

    /** Deletes a matrix: NotFoundError if unknown, ConflictError while a pending or running job uses it. */
    remove (id: number): void {
      db.transaction(() => {
        if (!shapeStmt().get(id)) throw new NotFoundError(`matrix ${id} not found`)
        const job = usedByStmt().get({ id })
        if (job) throw new ConflictError(`matrix ${id} is used by job ${job.id} (${job.status}); cancel or wait for it first`)
        deleteStmt().run(id)
      }).immediate()
    },

    /** How many matrices are stored, and their data bytes. */
    totals (): { n: number, bytes: number } {
      return countStmt().get() as { n: number, bytes: number }
    }
  }
}
