/**
 * The asynchronous matrix store: what the HTTP routes and the workers need of stored matrices, as
 * Promise-returning methods, with the synchronous SQLite store of src/matrices/store.ts behind it here and
 * PostgreSQL in src/store/postgres-matrices.ts. The server opens it in src/store/open.ts.
 */
import type { Db } from '../db.js'
import type { Matrix64 } from '../matrices/matrix.js'
import { createMatrixStore, type LoadedMatrix, type MatrixPage, type MatrixRow, type MatrixStore } from '../matrices/store.js'

export type { LoadedMatrix, MatrixPage, MatrixRow }

export interface AsyncMatrixStore {
  /** Stores an uploaded matrix; its row. */
  insert (m: Matrix64 & { name: string }): Promise<MatrixRow>
  /** Stores a matrix owned by a job (deleted with it); its id. */
  insertOwned (jobId: number, m: Matrix64 & { name: string }): Promise<number>
  /** Metadata, without reading the data. */
  get (id: number): Promise<MatrixRow | undefined>
  shape (id: number): Promise<{ rows: number, cols: number } | undefined>
  /** A matrix with its numbers; NotFoundError when there is none with that id. */
  load (id: number): Promise<LoadedMatrix>
  /** Metadata and the stored bytes as they are. */
  loadBytes (id: number): Promise<(MatrixRow & { data: Buffer }) | undefined>
  /** The top-left corner, at most `rows` × `cols` (≤ CORNER each), from the stored corner. */
  corner (id: number, rows: number, cols: number): Promise<{ meta: MatrixRow, data: number[][] } | undefined>
  /** A page of matrices, newest first. */
  list (options: { limit: number, cursor?: number }): Promise<MatrixPage>
  /** A pending or running matmul/matpow job that reads this matrix, if any. */
  usedBy (id: number): Promise<{ id: number, status: string } | undefined>
  /** NotFoundError if unknown, ConflictError while a pending or running job uses it. */
  remove (id: number): Promise<void>
  /** How many matrices are stored, and their data bytes. */
  totals (): Promise<{ n: number, bytes: number }>
}

/** The synchronous SQLite matrix store through the asynchronous interface. */
export function asyncSqliteMatrixStore (store: MatrixStore): AsyncMatrixStore {
  const run = async <T>(f: () => T): Promise<T> => f()
  return {
    insert: (m) => run(() => store.insert(m)),
    insertOwned: (jobId, m) => run(() => store.insertOwned(jobId, m)),
    get: (id) => run(() => store.get(id)),
    shape: (id) => run(() => store.shape(id)),
    load: (id) => run(() => store.load(id)),
    loadBytes: (id) => run(() => store.loadBytes(id)),
    corner: (id, rows, cols) => run(() => store.corner(id, rows, cols)),
    list: (options) => run(() => store.list(options)),
    usedBy: (id) => run(() => store.usedBy(id)),
    remove: (id) => run(() => store.remove(id)),
    totals: () => run(() => store.totals())
  }
}

/** An async matrix store over an open, migrated SQLite database. */
export function createSqliteMatrixStore (db: Db, clock: () => number = Date.now): AsyncMatrixStore {
  return asyncSqliteMatrixStore(createMatrixStore(db, clock))
}
