// The store conformance suite (test/fixtures/store-conformance.ts) on SQLite: the synchronous store of
// src/jobs/store.ts through the asynchronous interface.
import t from 'tap'
import { openDb } from '../../src/db.js'
import { createSqliteJobStore } from '../../src/store/sqlite.js'
import { tmpDb } from '../fixtures/helpers.js'
import { conformance, matrixConformance } from '../fixtures/store-conformance.js'
import { createSqliteMatrixStore } from '../../src/store/matrix-store.js'

conformance(t, async (t) => {
  const { db, path } = tmpDb(t)
  return {
    store: createSqliteJobStore(db),
    other: async () => {
      const second = openDb(path)
      t.teardown(() => second.close())
      return createSqliteJobStore(second)
    }
  }
})

matrixConformance(t, async (t) => {
  const { db } = tmpDb(t)
  return { jobs: createSqliteJobStore(db), matrices: createSqliteMatrixStore(db) }
})
