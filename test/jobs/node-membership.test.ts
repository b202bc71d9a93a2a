import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { createNodeMembership } from '../../src/jobs/node-membership.js'
import { createLogger } from '../../src/log.js'
import type { AsyncJobStore } from '../../src/store/job-store.js'
import { tmpDb, waitFor } from '../fixtures/helpers.js'

const log = createLogger({ logLevel: 'silent' })
const row = async (jobs: AsyncJobStore, id: string) => (await jobs.nodes()).find((n) => n.node_id === id)

t.test('a node whose row was deleted registers again at its next beat', async (t) => {
  const { jobs, db } = tmpDb(t)
  const m = createNodeMembership({ store: jobs, nodeId: 'node-a', log, beatMs: 50, boot: 'boot-1', pid: 4242, host: 'h' })
  t.teardown(() => m.stop())
  t.equal(await m.start(), undefined, 'no previous row')
  t.match(await row(jobs, 'node-a'), { boot_id: 'boot-1', pid: 4242, host: 'h' }, 'registered')
  db.prepare('DELETE FROM nodes').run()
  await waitFor(async () => row(jobs, 'node-a'), 2000, 'the row to be written again')
  await m.stop()
  t.equal(await row(jobs, 'node-a'), undefined, 'gone after stop')
})

t.test('the previous row of the node is handed back at start; a twin holding the id is not fought over', async (t) => {
  const { jobs } = tmpDb(t)
  await jobs.registerNode({ node_id: 'node-a', boot_id: 'old-boot', pid: 1111, host: 'h' })
  const m = createNodeMembership({ store: jobs, nodeId: 'node-a', log, beatMs: 50, boot: 'boot-2', pid: 2222, host: 'h' })
  t.teardown(() => m.stop())
  t.match(await m.start(), { boot_id: 'old-boot', pid: 1111 }, 'the previous row, read before registering')
  t.match(await row(jobs, 'node-a'), { boot_id: 'boot-2', pid: 2222 }, 'then registered afresh')
  // Another process registers the same id: the beats fail, and this node does not take the row back.
  await jobs.registerNode({ node_id: 'node-a', boot_id: 'boot-2', pid: 3333, host: 'h' })
  await sleep(300)
  t.equal((await row(jobs, 'node-a'))?.pid, 3333, 'the twin keeps the row')
})

t.test('a store that cannot register yet (no nodes on it) is logged, never thrown', async (t) => {
  const failing = async (): Promise<never> => { throw new Error('not yet on PostgreSQL') }
  const m = createNodeMembership({ store: { registerNode: failing, beatNode: failing, nodes: failing, leaveNode: failing }, nodeId: 'node-a', log, beatMs: 50 })
  t.equal(await m.start(), undefined, 'start resolves')
  t.equal(m.registered(), false, 'not registered')
  await sleep(200)
  await m.stop()
  t.pass('beats and stop did not throw')
})
