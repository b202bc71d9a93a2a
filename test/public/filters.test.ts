import t from 'tap'
// The dashboard's filter helpers, the very file the page loads.
import { bulkCount, filterQuery, matchesFilter, parseFilter } from '../../public/filters.js'

t.test('a filter goes to the query string and back unchanged', async (t) => {
  const filter = { status: ['running', 'failed'], type: 'matmul', name: 'big 100%', createdFrom: '2026-12-01T00:00:00.000Z', createdTo: '2026-12-02T00:00:00.000Z' }
  const query = filterQuery(filter)
  t.equal(query, 'status=running&status=failed&type=matmul&name=big+100%25&createdFrom=2026-12-01T00%3A00%3A00.000Z&createdTo=2026-12-02T00%3A00%3A00.000Z', 'fields in a fixed order')
  t.same(parseFilter(`?${query}`), filter, 'read back the same')
  t.equal(filterQuery({}), '', 'no filter, no query')
})

t.test('what a hand-edited or stale link holds that is not a filter is left out', async (t) => {
  t.same(parseFilter('?status=failed,bogus&status=done&type=Not%20a%20type&createdFrom=yesterday&page=3'), { status: ['done', 'failed'] }, 'only known statuses, in lifecycle order')
  t.same(parseFilter('?name=' + 'x'.repeat(300)).name.length, 200, 'a name is cut at 200 characters')
})

t.test('live updates keep only the jobs that match', async (t) => {
  const job = { status: 'failed', type: 'lyapunov', name: 'Nightly run', createdAt: '2026-12-01T12:00:00.000Z' }
  t.ok(matchesFilter(job, {}), 'no filter: every job')
  t.ok(matchesFilter(job, { status: ['failed', 'done'], type: 'lyapunov', name: 'NIGHTLY' }), 'status, type, name (any case)')
  t.notOk(matchesFilter(job, { status: ['done'] }), 'another status')
  t.notOk(matchesFilter(job, { type: 'matmul' }), 'another type')
  t.notOk(matchesFilter({ ...job, name: null }, { name: 'n' }), 'no name never contains text')
  t.notOk(matchesFilter({ ...job, name: 'Überlauf 0' }, { name: 'über' }), 'case folds A–Z only, as the server\'s LIKE: Ü is not ü')
  t.ok(matchesFilter({ ...job, name: 'Überlauf 0' }, { name: 'ÜBER' }), 'the same letters match')
  t.ok(matchesFilter(job, { createdFrom: '2026-12-01T12:00:00.000Z' }), 'from is inclusive')
  t.notOk(matchesFilter(job, { createdTo: '2026-12-01T12:00:00.000Z' }), 'to is exclusive')
})

t.test('the count a bulk confirmation shows', async (t) => {
  const counts = { pending: 1, running: 2, done: 3, failed: 4, canceled: 5 }
  t.equal(bulkCount('retry', counts, {}), 9, 'retry: failed and canceled')
  t.equal(bulkCount('retry', counts, { status: ['failed', 'done'] }), 4, 'within the filter\'s statuses only')
  t.equal(bulkCount('cancel', counts, {}), 3, 'cancel: pending and running')
  t.equal(bulkCount('delete', counts, { status: ['running'] }), 0, 'delete: nothing finished among running jobs')
})
