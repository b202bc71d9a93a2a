// The store conformance suite on a real PostgreSQL (a throwaway cluster: test/fixtures/postgres.ts), then what
// only PostgreSQL has to show: claims racing from several pools, a feed that neither skips nor repeats a change
// whose transaction commits late, migrations from several nodes at once, ages by the database's clock.
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type pg from 'pg'
import t, { type Test } from 'tap'
import type { JobRow } from '../../src/jobs/types.js'
import { createPostgresJobStore, openPostgres, type PostgresJobStore } from '../../src/store/postgres.js'
import { createPostgresMatrixStore } from '../../src/store/postgres-matrices.js'
import { latestPgSchemaVersion, migratePostgres, PG_MIGRATIONS_DIR, pgSchemaVersion } from '../../src/store/postgres-migrate.js'
import { waitFor } from '../fixtures/helpers.js'
import { startPostgres } from '../fixtures/postgres.js'
import { conformance, job, matrixConformance, readFeed } from '../fixtures/store-conformance.js'

const cluster = await startPostgres(t)

/** A pool on `url` closed at teardown (before the cluster stops: teardowns run in reverse order). */
function pool (t: Test, url: string, max = 4): pg.Pool {
  const p = openPostgres(url, { max })
  t.teardown(() => p.end())
  return p
}

/** A fresh migrated database and a store on it. */
async function freshStore (t: Test, max = 4): Promise<{ url: string, store: PostgresJobStore }> {
  const url = await cluster.createDatabase()
  const p = pool(t, url, max)
  await migratePostgres(p)
  return { url, store: createPostgresJobStore(p) }
}

// A real cluster and a few hundred store calls per test: longer than the default file timeout on a loaded machine.
t.setTimeout(600_000)

t.test('conformance on PostgreSQL', async (t) => {
  conformance(t, async (t) => {
    const { url, store } = await freshStore(t)
    return { store, other: async () => createPostgresJobStore(pool(t, url)) }
  })
})

t.test('matrix conformance on PostgreSQL', async (t) => {
  matrixConformance(t, async (t) => {
    const { store } = await freshStore(t)
    return { jobs: store, matrices: createPostgresMatrixStore(store.pool) }
  })
})

t.test('a claim race: several nodes, every job claimed once per lease', { timeout: 60_000 }, async (t) => {
  const { url, store } = await freshStore(t)
  const nodes = Array.from({ length: 5 }, () => createPostgresJobStore(pool(t, url, 4)))
  const N = 120
  const ids: number[] = []
  for (let i = 0; i < N; i++) ids.push((await store.submit(job({ priority: i % 3 }), 1000)).row.id)

  /** Every node runs 4 claim loops at once until the queue is empty; returns every claim made. */
  const race = async (): Promise<JobRow[]> => {
    const claims: JobRow[] = []
    await Promise.all(nodes.flatMap((node, n) => Array.from({ length: 4 }, async (_, k) => {
      for (;;) {
        const row = await node.claimNext(`node${n}-loop${k}-${claims.length}`, 1000 + n, `node${n}`)
        if (!row) return
        claims.push(row)
      }
    })))
    return claims
  }

  const first = await race()
  t.equal(first.length, N, `${N} claims for ${N} jobs`)
  t.same(first.map((r) => r.id).sort((a, b) => a - b), ids, 'each job claimed exactly once')
  t.ok(first.every((r) => r.lease === 1 && r.attempts === 1), 'all with lease 1')
  t.ok(new Set(first.map((r) => r.worker)).size === N, 'each by its own token')
  t.ok(new Set(first.map((r) => r.worker!.split('-')[0])).size > 1, 'several nodes won claims')
  t.ok(first.every((r) => r.node === r.worker!.split('-')[0]), 'each claim records the node that made it')
  const { rows: claimedEvents } = await store.pool.query<{ job_id: string, detail: string }>(
    "SELECT job_id, detail FROM job_events WHERE kind = 'claimed' ORDER BY job_id")
  t.same(claimedEvents.map((e) => Number(e.job_id)), ids, 'one claimed event per claim, committed with it')
  const pidOf = new Map(first.map((r) => [r.id, 1000 + Number(r.node!.slice(4))]))
  t.ok(claimedEvents.every((e) => JSON.parse(e.detail).pid === pidOf.get(Number(e.job_id))), 'with the pid of the claiming worker')

  // Half the attempts are lost, the other half done, all at once from every node; then a second race.
  const outcomes = await Promise.all(first.map((row, i) => i % 2
    ? nodes[i % nodes.length].markLost(row, 'node died', 3)
    : nodes[i % nodes.length].complete(row, { i }).then((r) => (r.ok ? 'done' : 'fenced'))))
  t.equal(outcomes.filter((o) => o === 'requeued').length, N / 2, 'half requeued')
  t.equal(outcomes.filter((o) => o === 'done').length, N / 2, 'half done')
  const second = await race()
  t.equal(second.length, N / 2, 'the requeued half is claimed again, once each')
  t.equal(new Set(second.map((r) => r.id)).size, N / 2, 'no job twice')
  t.ok(second.every((r) => r.lease === 2), 'with lease 2')
  // The old attempts of the requeued jobs are fenced out; the new ones finish; every job is done once.
  const stale = await Promise.all(first.filter((_, i) => i % 2).map((row) => nodes[0].complete(row, { stale: true })))
  t.ok(stale.every((r) => !r.ok), 'every stale attempt is refused')
  const fresh = await Promise.all(second.map((row, i) => nodes[i % nodes.length].complete(row, { fresh: true })))
  t.ok(fresh.every((r) => r.ok), 'every live attempt completes')
  t.same(await store.counts(), { pending: 0, running: 0, done: N, failed: 0, canceled: 0 }, 'every job done, none twice')
  const { rows } = await store.pool.query<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE result LIKE '%stale%'")
  t.equal(Number(rows[0].n), 0, 'no stale result stored')
})

t.test('feed completeness: a transaction that commits late is neither skipped nor repeated', { timeout: 60_000 }, async (t) => {
  const { url, store } = await freshStore(t)
  const held = (await store.submit(job({ name: 'held' }), 100)).row
  const head = await store.feedHead()

  // A transaction that writes first and commits last.
  const slow = pool(t, url, 1)
  const c = await slow.connect()
  t.teardown(() => c.release())
  await c.query('BEGIN')
  await c.query("UPDATE jobs SET name = 'held, committed late' WHERE id = $1", [held.id])
  const { rows: [{ id: heldEntry }] } = await c.query<{ id: string }>('SELECT max(id) AS id FROM job_changes')

  // Later transactions commit meanwhile.
  const later: number[] = []
  for (let i = 0; i < 5; i++) later.push((await store.submit(job({ name: `later ${i}` }), 100)).row.id)
  const { rows: visible } = await store.pool.query<{ id: string }>('SELECT id FROM job_changes WHERE job_id = ANY($1::bigint[]) ORDER BY id', [later])
  t.ok(visible.length === 5 && visible.every((r) => BigInt(r.id) > BigInt(heldEntry)),
    'the committed entries all have higher ids than the open one: a reader of "ids above my cursor" would pass it for good')

  t.same(await store.changesAfter(head), [], 'the feed does not pass the open transaction')
  await c.query('SELECT pg_sleep(0.2)')
  t.same(await store.changesAfter(head), [], 'still not, however long it stays open')
  await c.query('COMMIT')

  const changes = await readFeed(store, head, 1)
  t.same(changes.map((x) => x.row?.name), ['held, committed late', 'later 0', 'later 1', 'later 2', 'later 3', 'later 4'],
    'once it commits: its change first, then the later ones, each once, in order')
  t.same(changes.map((x) => x.row?.id), [held.id, ...later], 'the right jobs')
  t.same(await store.changesAfter(changes.at(-1)!.eventId), [], 'nothing more')
})

t.test('feed completeness under concurrent writers: every change once, in order', { timeout: 90_000 }, async (t) => {
  const { url, store } = await freshStore(t)
  const writers = Array.from({ length: 4 }, () => pool(t, url, 2))
  const ids: number[] = []
  for (let i = 0; i < 8; i++) ids.push((await store.submit(job({ name: `j${i}` }), 100)).row.id)
  const head = await store.feedHead()
  const delivered: string[] = []
  let cursor = head
  const last: { entry?: string } = {} // the last entry written, once the writers are done
  // A reader in pages of one (no folding), polling while the writers run, until it has reached the last entry
  // (bounded: a feed that never gets there fails the comparison below).
  const reader = (async () => {
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline && (last.entry === undefined || cursor !== last.entry)) {
      const changes = await store.changesAfter(cursor, 1)
      if (changes.length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 2))
        continue
      }
      delivered.push(changes[0].eventId)
      cursor = changes[0].eventId
    }
  })()
  // Writers: transactions of random length (pg_sleep inside), each touching one or two jobs.
  await Promise.all(writers.map(async (w, k) => {
    for (let i = 0; i < 25; i++) {
      const c = await w.connect()
      try {
        await c.query('BEGIN')
        const a = ids[(k * 7 + i) % ids.length]
        await c.query('UPDATE jobs SET progress = progress + 1 WHERE id = $1', [a])
        await c.query('SELECT pg_sleep($1)', [Math.random() * 0.02])
        if (i % 3 === 0) await c.query('UPDATE jobs SET step = step + 1 WHERE id = $1', [ids[(a + 3) % ids.length]])
        await c.query('COMMIT')
      } catch (err) {
        await c.query('ROLLBACK')
        if ((err as { code?: string }).code !== '40P01') throw err // a deadlock between two writers: retried no more
      } finally {
        c.release()
      }
    }
  }))
  const { rows } = await store.pool.query<{ e: string }>(`
    SELECT xid::text || '.' || id AS e FROM job_changes
    WHERE (xid, id) > (split_part($1, '.', 1)::xid8, split_part($1, '.', 2)::bigint) ORDER BY xid, id`, [head])
  last.entry = rows.at(-1)?.e ?? head
  await reader
  t.ok(rows.length >= 100, `${rows.length} changes written`)
  t.same(delivered, rows.map((r) => r.e), 'the reader delivered every change once, in (xid, id) order')
})

t.test('migrations: several nodes at once apply each once; a newer schema is refused', { timeout: 60_000 }, async (t) => {
  const url = await cluster.createDatabase()
  const pools = Array.from({ length: 6 }, () => pool(t, url, 2))
  const results = await Promise.all(pools.map((p) => migratePostgres(p)))
  const latest = latestPgSchemaVersion()
  t.ok(latest >= 1, `latest version ${latest}`)
  t.equal(results.filter((r) => r.length > 0).length, 1, 'one node applied them')
  t.same(results.find((r) => r.length > 0), Array.from({ length: latest }, (_, i) => i + 1), 'all of them, in order')
  const { rows } = await pools[0].query<{ version: number, n: string }>('SELECT version, count(*) OVER () AS n FROM schema_migrations ORDER BY version')
  t.equal(rows.length, latest, 'each recorded once')
  t.equal(await pgSchemaVersion(pools[0]), latest, 'schema version')
  t.same(await migratePostgres(pools[1]), [], 'again: nothing to do')

  // A migration that fails rolls back whole and is not recorded.
  const dir = mkdtempSync(join(tmpdir(), 'nonstop-pgmig-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const f of readdirSync(PG_MIGRATIONS_DIR)) copyFileSync(join(PG_MIGRATIONS_DIR, f), join(dir, f))
  const broken = String(latest + 1).padStart(3, '0')
  writeFileSync(join(dir, `${broken}_broken.sql`), 'CREATE TABLE half_done (x int);\nSELECT no_such_function();\n')
  await t.rejects(migratePostgres(pools[2], dir), /migration \d+_broken\.sql failed/, 'a failing migration is reported')
  t.equal(await pgSchemaVersion(pools[2]), latest, 'and not recorded')
  const { rows: half } = await pools[2].query("SELECT to_regclass('half_done') AS r")
  t.equal(half[0].r, null, 'nothing of it is left')

  // A database from a newer nonstop.
  await pools[3].query("INSERT INTO schema_migrations (version, name) VALUES (999, '999_future.sql')")
  await t.rejects(migratePostgres(pools[3]), /database schema version 999 is newer than this code knows/, 'refused')
  const { rows: after } = await pools[3].query<{ n: string }>('SELECT count(*) AS n FROM schema_migrations')
  t.equal(Number(after[0].n), latest + 1, 'nothing changed')
})

t.test('ages are measured with the database clock, and ids cannot be chosen', { timeout: 30_000 }, async (t) => {
  const { store } = await freshStore(t)
  const { row } = await store.submit(job(), 100)
  const claim = (await store.claimNext('w'))!
  // Ten seconds of silence by the database's clock, whatever this process's clock says.
  await store.pool.query("UPDATE jobs SET heartbeat_at = now() - interval '10 s' WHERE id = $1", [row.id])
  const [aged] = await store.runningWithAges()
  t.ok(aged.silentMs! >= 10_000 && aged.silentMs! < 12_000, `silent ${aged.silentMs} ms`)
  t.equal(await store.markLost(claim, 'no heartbeat', 3, 5000), 'requeued', 'taken over after 5 s of its silence')
  const again = (await store.claimNext('w2'))!
  t.equal(await store.markLost(again, 'no heartbeat', 3, 5000), 'alive', 'a fresh claim is alive')
  await t.rejects(store.pool.query("INSERT INTO jobs (id, params, steps) VALUES (1, '{}', 1)"), { code: '428C9' },
    'an insert cannot choose an id (GENERATED ALWAYS)')
})

t.test('pruned feed: a client from before the pruning is told to reset', { timeout: 30_000 }, async (t) => {
  const { store } = await freshStore(t)
  const head = await store.feedHead()
  for (let i = 0; i < 10; i++) await store.submit(job(), 100)
  const all = await readFeed(store, head, 100)
  t.equal(all.length, 10, 'ten changes')
  t.ok(await store.canResume(head, 100), 'resumable before pruning')
  t.equal(await store.pruneFeed(3), 7, 'all but the newest three pruned')
  t.notOk(await store.canResume(head, 100), 'the old cursor can no longer resume')
  t.ok(await store.canResume(all[6].eventId, 100), 'the pruning boundary still can')
  t.same((await readFeed(store, all[6].eventId)).map((x) => x.eventId), all.slice(7).map((x) => x.eventId), 'and reads the rest')
})

t.test('periodic slots raced by ten callers on five pools: exactly one per interval', { timeout: 60_000 }, async (t) => {
  const { url } = await freshStore(t)
  const callers = Array.from({ length: 10 }, (_, i) => i)
  const pools = Array.from({ length: 5 }, () => pool(t, url, 2))
  const stores = callers.map((i) => createPostgresJobStore(pools[i % pools.length]))
  const race = async (name: string, intervalMs: number): Promise<number> =>
    (await Promise.all(stores.map((s) => s.claimPeriodic(name, intervalMs)))).filter(Boolean).length
  for (let i = 0; i < 5; i++) t.equal(await race(`fresh ${i}`, 60_000), 1, `a new slot (the conflicting inserts): one winner (${i})`)
  for (let i = 0; i < 5; i++) {
    t.equal(await race('sweep', 60_000), i === 0 ? 1 : 0, `round ${i}: ${i === 0 ? 'one winner' : 'none within the interval'}`)
  }
  for (let i = 0; i < 5; i++) {
    // The interval passes by the database's clock: the slot's last run moved a minute back.
    await pools[0].query("UPDATE periodic SET last_at = last_at - interval '61 s' WHERE name = 'sweep'")
    t.equal(await race('sweep', 60_000), 1, `interval ${i} passed: exactly one winner`)
    t.equal(await race('sweep', 60_000), 0, `interval ${i}: no second one`)
  }
  // In real time, with a short interval: one per interval, over several intervals.
  t.equal(await race('short', 300), 1, 'one winner')
  t.equal(await race('short', 300), 0, 'none right after')
  await new Promise((resolve) => setTimeout(resolve, 350))
  t.equal(await race('short', 300), 1, 'one in the next interval')
  const { rows } = await pools[0].query<{ n: string }>('SELECT count(*) AS n FROM periodic')
  t.equal(Number(rows[0].n), 7, 'one row per task')
})

t.test('history is written in the transaction of its change: no event, no change; no change, no event', { timeout: 60_000 }, async (t) => {
  const { url, store } = await freshStore(t)
  // A trigger that refuses one kind of event: the change it describes must be refused with it.
  await store.pool.query(`CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.kind = current_setting('test.refuse', true) THEN RAISE EXCEPTION 'event % refused', NEW.kind; END IF; RETURN NEW; END $$`)
  await store.pool.query('CREATE TRIGGER refuse_event BEFORE INSERT ON job_events FOR EACH ROW EXECUTE FUNCTION refuse_event()')
  /** A store on one connection whose event `kind` is refused. */
  const refusingStore = async (kind: string): Promise<PostgresJobStore> => {
    const p = pool(t, url, 1)
    await p.query(`SET test.refuse = '${kind}'`)
    return createPostgresJobStore(p)
  }
  const refusing = await refusingStore('claimed')
  const { row } = await store.submit(job(), 100)
  await t.rejects(refusing.claimNext('w', 1, 'n'), /event claimed refused/, 'a claim whose event fails fails')
  const after = (await store.get(row.id))!
  t.match(after, { status: 'pending', lease: 0, attempts: 0, worker: null, node: null }, 'and the job was not claimed')
  // pg rejects a statement as soon as PostgreSQL reports its error, a moment before the backend has rolled the
  // statement back and released its row lock: until then SKIP LOCKED passes the job by.
  const claim = await waitFor(() => store.claimNext('w', 1, 'n'), 5000, 'the job claimable again')
  t.equal(claim.id, row.id, 'a claim whose event is written succeeds')

  const refusingDone = await refusingStore('done')
  await t.rejects(refusingDone.complete(claim, { x: 1 }), /event done refused/, 'a completion whose event fails fails')
  const still = (await store.get(row.id))!
  t.match(still, { status: 'running', result: null }, 'and the job is still running, without a result')
  t.ok((await store.events(row.id)).every((e) => e.kind !== 'done'), 'no done event')
  const refusingStop = await refusingStore('stop-requested')
  await t.rejects(refusingStop.requestStop(row.id, 'cancel', 'api'), /refused/, 'a stop request whose event fails fails')
  t.equal((await store.get(row.id))?.stop_request, null, 'and asks nothing')
  t.ok((await store.complete(claim, { x: 2 })).ok, 'with the event written, it completes')
  t.same((await store.events(row.id)).map((e) => e.kind), ['submitted', 'claimed', 'done'], 'one event per change made')
})

t.test('a worker racing its takeover: the job and its history agree, and a fenced-out write adds nothing', { timeout: 60_000 }, async (t) => {
  const { url, store } = await freshStore(t)
  const a = createPostgresJobStore(pool(t, url, 4))
  const b = createPostgresJobStore(pool(t, url, 4))
  const N = 40
  const claims: JobRow[] = []
  for (let i = 0; i < N; i++) {
    await store.submit(job(), 1000)
    claims.push((await store.claimNext(`w${i}`, 100 + i, 'n1'))!)
  }
  // Each job's worker completes it while the sweeper declares it lost, from two pools at once; and three stop
  // requests race for it from three pools.
  const outcomes = await Promise.all(claims.map(async (c, i) => {
    const [done, lost] = await Promise.all([
      (i % 2 ? a : b).complete(c, { i }),
      (i % 2 ? b : a).markLost(c, 'sweeper', 3),
      Promise.all([store.requestStop(c.id, 'cancel', 'api'), a.requestStop(c.id, 'cancel', 'bulk'), b.requestStop(c.id, 'cancel', 'scheduler')])
    ])
    return { done: done.ok, lost }
  }))
  t.ok(outcomes.every((o) => o.done !== (o.lost === 'requeued')), 'for each job, exactly one of the two won')
  for (const [i, c] of claims.entries()) {
    const row = (await store.get(c.id))!
    const events = await store.events(c.id)
    const kinds = events.map((e) => e.kind)
    const ends = kinds.filter((k) => k === 'done' || k === 'lost')
    if (ends.length !== 1) t.fail(`job ${c.id}: one end in its history (${kinds})`)
    if (kinds.filter((k) => k === 'stop-requested').length > 1) t.fail(`job ${c.id}: at most one stop request recorded (${kinds})`)
    const expected = outcomes[i].done ? 'done' : 'pending'
    if (row.status !== expected || ends[0] !== (outcomes[i].done ? 'done' : 'lost')) {
      t.fail(`job ${c.id}: its state (${row.status}) and its history (${kinds}) agree with the winner`)
    }
  }
  const { rows } = await store.pool.query<{ n: string }>("SELECT count(*) AS n FROM job_events WHERE kind IN ('done', 'lost')")
  t.equal(Number(rows[0].n), N, `${N} ends recorded for ${N} jobs: no fenced-out write left an event`)
  const { rows: stops } = await store.pool.query<{ n: string }>("SELECT count(*) AS n FROM job_events WHERE kind = 'stop-requested'")
  const { rows: asked } = await store.pool.query<{ n: string }>(
    "SELECT count(*) AS n FROM jobs WHERE stop_request IS NOT NULL OR id IN (SELECT job_id FROM job_events WHERE kind = 'stop-requested')")
  t.equal(Number(stops[0].n), Number(asked[0].n), 'one stop-requested event per job that was asked, whichever pool won')
})

t.test('a result() slower than the idle-in-transaction timeout still ends its job, its matrices with it', { timeout: 60_000 }, async (t) => {
  const url = await cluster.createDatabase()
  // The worker's pool: PostgreSQL ends a session idle inside a transaction for 300 ms (half a 600 ms lease).
  const p = openPostgres(url, { max: 2, idleInTransactionMs: 300 })
  t.teardown(() => p.end())
  await migratePostgres(p)
  const store = createPostgresJobStore(p)
  const { row } = await store.submit(job({ type: 'matpow', params: { matrix: 1, exponent: 2 } }), 100)
  const claim = (await store.claimNext('w'))!
  t.ok((await store.begin(claim, { step: 0, progress: 0, pid: 1 })).ok, 'begun')
  const slow = (ms: number): void => { const until = Date.now() + ms; while (Date.now() < until); }
  const done = await store.completeWith(claim, (out) => {
    slow(900) // three times the timeout: the job's own code, which no transaction may wait for
    return { matrix: out.storeMatrix({ name: 'slow', rows: 1, cols: 2, data: new Float64Array([1.5, -2]) }) }
  })
  t.ok(done.ok, 'completed')
  const stored = (await store.get(row.id))!
  t.equal(stored.status, 'done', 'the job is done')
  const id = (done.ok ? done.value : {}) as { matrix: number }
  t.same(JSON.parse(stored.result!), id, 'with the result built')
  const m = await createPostgresMatrixStore(p).load(id.matrix)
  t.same([m.name, Array.from(m.data)], ['slow', [1.5, -2]], 'and its matrix stored under the id it was given')
})
