/**
 * Matrices on PostgreSQL (migrations/postgres/001_init.sql: `corner` and `data` are bytea), behind the
 * asynchronous interface of src/store/matrix-store.ts. Reading metadata or the corner never reads `data`
 * (PostgreSQL stores a large bytea out of line, TOAST, and fetches it only when selected).
 */
import type pg from 'pg'
import { ConflictError, NotFoundError } from '../errors.js'
import { canonicalBytes, fromCanonicalBytes, type Matrix64, matrixSha256 } from '../matrices/matrix.js'
import { CORNER, cornerBytes, type MatrixRow } from '../matrices/store.js'
import type { AsyncMatrixStore } from './matrix-store.js'

/** The advisory lock submits hold (src/store/postgres.ts): a delete holds it too, so no submit slips between its
 *  "is it used?" check and the delete. */
const SUBMIT_LOCK_KEY = '126947999705460'

const META = 'id, name, rows, cols, sha256, bytes, floor(extract(epoch from created_at) * 1000)::float8 AS created_at, job_id'

type Raw = Record<string, unknown>
const toMeta = (r: Raw): MatrixRow => ({
  ...(r as unknown as MatrixRow),
  id: Number(r.id),
  bytes: Number(r.bytes),
  job_id: r.job_id === null ? null : Number(r.job_id)
})

/** Jobs that read matrix $1: matmul {"matrices": [ids]}, matpow {"matrix": id}. */
const USED_BY = `
  SELECT id, status FROM jobs
  WHERE status IN ('pending', 'running') AND (
    (type = 'matpow' AND params::jsonb -> 'matrix' = to_jsonb($1::bigint))
    OR (type = 'matmul' AND params::jsonb -> 'matrices' @> jsonb_build_array($1::bigint)))
  ORDER BY id LIMIT 1`

/** Inserts a matrix (owned by `jobId`, or an upload for null); with `id`, under that id (one taken from the
 *  identity's sequence beforehand). Its metadata row. */
export async function insertMatrix (q: pg.Pool | pg.PoolClient, m: Matrix64 & { name: string }, jobId: number | null, id?: number): Promise<MatrixRow> {
  const { rows } = await q.query<Raw>(`
    INSERT INTO matrices (${id === undefined ? '' : 'id, '}name, rows, cols, sha256, bytes, job_id, corner, data)
    ${id === undefined ? '' : 'OVERRIDING SYSTEM VALUE '}VALUES (${id === undefined ? '' : '$9, '}$1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${META}`,
  [m.name, m.rows, m.cols, matrixSha256(m.data), m.rows * m.cols * 8, jobId, cornerBytes(m), canonicalBytes(m.data), ...(id === undefined ? [] : [id])])
  return toMeta(rows[0])
}

export function createPostgresMatrixStore (pool: pg.Pool): AsyncMatrixStore {
  const getMeta = async (id: number): Promise<MatrixRow | undefined> => {
    const { rows } = await pool.query<Raw>(`SELECT ${META} FROM matrices WHERE id = $1`, [id])
    return rows.length ? toMeta(rows[0]) : undefined
  }
  const insert = (m: Matrix64 & { name: string }, jobId: number | null): Promise<MatrixRow> => insertMatrix(pool, m, jobId)
  const loadBytes = async (id: number): Promise<(MatrixRow & { data: Buffer }) | undefined> => {
    const { rows } = await pool.query<Raw>(`SELECT ${META}, data FROM matrices WHERE id = $1`, [id])
    return rows.length ? { ...toMeta(rows[0]), data: rows[0].data as Buffer } : undefined
  }
  const usedBy = async (q: pg.Pool | pg.PoolClient, id: number): Promise<{ id: number, status: string } | undefined> => {
    const { rows } = await q.query<{ id: string, status: string }>(USED_BY, [id])
    return rows.length ? { id: Number(rows[0].id), status: rows[0].status } : undefined
  }

  return {
    insert: (m) => insert(m, null),
    insertOwned: async (jobId, m) => (await insert(m, jobId)).id,
    get: getMeta,
    async shape (id) {
      const { rows } = await pool.query<{ rows: number, cols: number }>('SELECT rows, cols FROM matrices WHERE id = $1', [id])
      return rows[0]
    },
    async load (id) {
      const row = await loadBytes(id)
      if (!row) throw new NotFoundError(`matrix ${id} not found`)
      return { id: row.id, name: row.name, rows: row.rows, cols: row.cols, data: fromCanonicalBytes(row.data) }
    },
    loadBytes,
    async corner (id, rows, cols) {
      const { rows: found } = await pool.query<Raw>(`SELECT ${META}, corner FROM matrices WHERE id = $1`, [id])
      if (found.length === 0) return undefined
      const { corner, ...rest } = found[0]
      const meta = toMeta(rest)
      const width = Math.min(meta.cols, CORNER)
      const r = Math.min(rows, meta.rows, CORNER)
      const c = Math.min(cols, width)
      const stored = fromCanonicalBytes(corner as Buffer)
      return { meta, data: Array.from({ length: r }, (_, i) => Array.from(stored.subarray(i * width, i * width + c))) }
    },
    async list (options) {
      const { rows } = await pool.query<Raw>(`SELECT ${META} FROM matrices WHERE id < $1 ORDER BY id DESC LIMIT $2`,
        [options.cursor ?? Number.MAX_SAFE_INTEGER, options.limit + 1])
      const matrices = rows.map(toMeta)
      const more = matrices.length > options.limit
      if (more) matrices.pop()
      return { matrices, nextCursor: more ? matrices[matrices.length - 1].id : null }
    },
    usedBy: (id) => usedBy(pool, id),
    async remove (id) {
      const c = await pool.connect()
      let broken: Error | undefined
      try {
        await c.query('BEGIN')
        await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [SUBMIT_LOCK_KEY])
        const { rows } = await c.query('SELECT 1 FROM matrices WHERE id = $1 FOR UPDATE', [id])
        if (rows.length === 0) throw new NotFoundError(`matrix ${id} not found`)
        const job = await usedBy(c, id)
        if (job) throw new ConflictError(`matrix ${id} is used by job ${job.id} (${job.status}); cancel or wait for it first`)
        await c.query('DELETE FROM matrices WHERE id = $1', [id])
        await c.query('COMMIT')
      } catch (err) {
        await c.query('ROLLBACK').catch((e: Error) => { broken = e })
        throw err
      } finally {
        c.release(broken)
      }
    },
    async totals () {
      const { rows } = await pool.query<{ n: string, bytes: string }>('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS bytes FROM matrices')
      return { n: Number(rows[0].n), bytes: Number(rows[0].bytes) }
    }
  }
}
