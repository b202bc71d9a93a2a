import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { type Browser, chromium, type Page } from 'playwright-core'
import type { Test } from 'tap'
import t from 'tap'
import { api, type ServerProcess, startServer, waitFor } from '../fixtures/helpers.js'

// The dashboard as a control room, in a real headless Chromium against the built server (npm run build first):
// each job's history, filters in the URL, actions on everything matching, throughput.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

interface Watched { page: Page, errors: string[], dialogs: string[] }

async function open (t: Test, browser: Browser, url: string): Promise<Watched> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  t.teardown(() => context.close())
  const page = await context.newPage()
  const errors: string[] = []
  const dialogs: string[] = []
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()) })
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`))
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message())
    dialog.dismiss().catch(() => {})
  })
  await page.goto(url)
  await page.locator('#live[data-state="live"]').waitFor({ timeout: 10_000 })
  return { page, errors, dialogs }
}

const rowIds = (page: Page): Promise<number[]> =>
  page.locator('#jobs tbody tr').evaluateAll((trs) => trs.map((tr) => Number((tr as HTMLElement).dataset.id)))

if (!existsSync(CHROMIUM)) {
  t.plan(0, `no Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`)
} else {
  let browser: Browser
  let server: ServerProcess
  const dir = mkdtempSync(join(tmpdir(), 'nonstop-control-room-'))
  const dbPath = join(dir, 'nonstop.db')

  t.before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
    })
    server = await startServer(t, { MAX_CONCURRENCY: '2', DB_PATH: dbPath, CHECKPOINT_MS: '200', STOP_GRACE_MS: '2000', HEARTBEAT_MS: '200', LEASE_MS: '2000' })
  })
  t.teardown(async () => {
    await browser?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  t.test('a worker SIGKILLed mid-job: "lost … resumes from step k" and "resumed from step k" in the history and on the page', async (t) => {
    const { body: job } = await api(server.url, '/api/jobs', { body: { n: 300, steps: 200, seed: 5, name: 'kill-me' } })
    const db = new Database(dbPath, { fileMustExist: true }) // read, never written, by the test
    t.teardown(() => db.close())
    const checkpoint = db.prepare<[number], { step: number }>('SELECT step FROM checkpoints WHERE job_id = ?')
    await waitFor(() => (checkpoint.get(job.id)?.step ?? 0) >= 3, 60_000, 'a checkpoint at step 3 or later')
    const pid = (await api(server.url, `/api/jobs/${job.id}`)).body.pid as number
    t.ok(pid > 0, `worker pid ${pid}`)
    // Frozen first, so that the checkpoint read next is the one the next attempt resumes from.
    process.kill(pid, 'SIGSTOP')
    const k = checkpoint.get(job.id)!.step
    process.kill(pid, 'SIGKILL')
    t.comment(`killed worker ${pid} with its checkpoint at step ${k}`)
    await waitFor(async () => (await api(server.url, `/api/jobs/${job.id}`)).body.status === 'done', 120_000, 'the job to end done')

    const { status, body } = await api(server.url, `/api/jobs/${job.id}/events`)
    t.equal(status, 200, 'GET /api/jobs/:id/events: 200')
    const lost = body.events.find((e: { kind: string }) => e.kind === 'lost')
    t.match(lost, { attempt: 1, detail: { reason: 'worker killed by SIGKILL', resumesFromStep: k } }, 'lost: the reason, and the checkpoint\'s step it resumes from')
    t.match(lost.message, new RegExp(`^attempt 1 lost at step \\d+ of 200 — worker killed by SIGKILL; resumes from step ${k}$`), lost.message)
    const started = body.events.filter((e: { kind: string }) => e.kind === 'started')
    t.match(started.map((e: { message: string }) => e.message), [/^attempt 1 started from scratch/, new RegExp(`^attempt 2 resumed from step ${k} `)], 'attempt 2 resumed from the checkpoint')
    t.same(body.events.map((e: { kind: string }) => e.kind).filter((kind: string) => kind !== 'checkpoint'),
      ['submitted', 'claimed', 'started', 'lost', 'claimed', 'started', 'done'], 'the whole story, in order')

    const { page, errors } = await open(t, browser, `${server.url}/?name=kill-me`)
    await page.getByRole('button', { name: `Details of job ${job.id}` }).click()
    const history = page.locator('dialog#detail .timeline')
    await history.waitFor({ state: 'visible', timeout: 5000 })
    const text = await history.textContent() ?? ''
    t.match(text, new RegExp(`attempt 1 lost at step \\d+ of 200 — worker killed by SIGKILL; resumes from step ${k}`), 'the timeline shows the loss')
    t.match(text, new RegExp(`attempt 2 resumed from step ${k}`), 'and the resume')
    t.match(text, /done in [\d.]+ (s|m [\d.]+ s) at [\d.]+ GF\/s/, 'and the end')

    const log = await api(server.url, `/api/jobs/${job.id}/log`)
    t.equal(log.status, 200, 'GET /api/jobs/:id/log: 200')
    const events = log.body.lines.map((l: { fields: string }) => JSON.parse(l.fields).event)
    t.ok(log.body.logFile && ['submitted', 'claimed', 'started', 'requeued', 'done'].every((e) => events.includes(e)), `the log lines of the job from LOG_FILE: ${[...new Set(events)].join(', ')}`)
    await page.getByRole('button', { name: 'Show the log lines of this job' }).click()
    await waitFor(async () => /job requeued|lost its worker/.test(await page.locator('dialog#detail .log-lines').textContent().catch(() => '') ?? ''), 5000, 'the log lines in the dialog')
    t.pass('the dialog shows the worker\'s log lines, the loss among them')
    t.same(errors, [], 'no console errors')
  })

  t.test('a filter set on the page is in the URL, survives a reload, and the back button undoes it', async (t) => {
    const names = ['alpha one', 'alpha two', 'beta']
    const ids: number[] = []
    for (const name of names) {
      const { body } = await api(server.url, '/api/jobs', { body: { n: 2, steps: 1, name } })
      ids.push(body.id)
    }
    for (const id of ids) await waitFor(async () => (await api(server.url, `/api/jobs/${id}`)).body.status === 'done', 30_000, `job ${id} done`)
    const { page, errors, dialogs } = await open(t, browser, server.url)
    await page.locator('#filters input[name="status"][value="done"]').check()
    await waitFor(() => new URL(page.url()).searchParams.getAll('status').join() === 'done', 5000, 'status in the URL')
    await page.getByLabel('Name contains').fill('ALPHA')
    await waitFor(() => new URL(page.url()).searchParams.get('name') === 'ALPHA', 5000, 'name in the URL')
    t.equal(new URL(page.url()).search, '?status=done&name=ALPHA', 'the filter is in the URL')
    const expected = [ids[1], ids[0]]
    await waitFor(async () => JSON.stringify(await rowIds(page)) === JSON.stringify(expected), 5000, 'the filtered rows')
    t.pass('only the done jobs named alpha are listed')
    await waitFor(async () => /^2 jobs match this filter$/.test(await page.locator('#match-count').textContent() ?? ''), 5000, 'the count')
    t.pass('the page counts the matching jobs')

    await page.reload()
    await page.locator('#live[data-state="live"]').waitFor()
    await waitFor(async () => JSON.stringify(await rowIds(page)) === JSON.stringify(expected), 5000, 'the same rows after the reload')
    t.equal(await page.locator('#filters input[name="status"][value="done"]').isChecked(), true, 'the status is still checked')
    t.equal(await page.getByLabel('Name contains').inputValue(), 'ALPHA', 'the name is still there')

    await page.goBack()
    await waitFor(() => new URL(page.url()).search === '?status=done', 5000, 'the previous URL')
    await waitFor(async () => (await page.getByLabel('Name contains').inputValue()) === '', 5000, 'the name cleared')
    await waitFor(async () => (await rowIds(page)).includes(ids[2]), 5000, 'beta listed again')
    t.pass('back: the filter before the name')

    const shared = await open(t, browser, `${server.url}/?status=done&name=beta`)
    await waitFor(async () => JSON.stringify(await rowIds(shared.page)) === JSON.stringify([ids[2]]), 5000, 'a shared link')
    t.pass('a shared link gives the same view')
    t.same([...errors, ...shared.errors], [], 'no console errors')
    t.same(dialogs, [], 'no browser dialogs')
  })

  t.test('"retry all matching" with a failed filter retries exactly those jobs, after a confirmation with the count', async (t) => {
    const failed: number[] = []
    for (let i = 0; i < 3; i++) {
      const { body } = await api(server.url, '/api/jobs', { body: { n: 400, steps: 10000, name: `retry-me ${i}`, timeoutSeconds: 1, priority: 10 } })
      failed.push(body.id)
    }
    const { body: done } = await api(server.url, '/api/jobs', { body: { n: 2, steps: 1, name: 'retry-me done', priority: 10 } })
    const { body: canceled } = await api(server.url, '/api/jobs', { body: { n: 2, steps: 1, name: 'retry-me canceled', priority: -10 } })
    await api(server.url, `/api/jobs/${canceled.id}/cancel`, { method: 'POST' })
    await waitFor(async () => {
      const { body } = await api(server.url, '/api/jobs?name=retry-me&status=failed')
      return body.jobs.length === 3
    }, 60_000, 'three jobs failed by their time limit')
    await waitFor(async () => (await api(server.url, `/api/jobs/${done.id}`)).body.status === 'done', 30_000, 'the small job done')
    const before = (await api(server.url, '/api/jobs/counts?name=retry-me&status=failed')).body
    t.equal(before.total, 3, 'the API counts 3 failed jobs matching')

    const { page, errors, dialogs } = await open(t, browser, `${server.url}/?status=failed&name=retry-me`)
    await waitFor(async () => (await rowIds(page)).length === 3, 5000, 'the three failed jobs listed')
    await page.getByRole('button', { name: 'Retry all matching' }).click()
    const confirm = page.locator('dialog#bulk-confirm')
    await confirm.waitFor({ state: 'visible' })
    t.match(await confirm.textContent(), /Retry the 3 failed or canceled jobs matching this filter\?/, 'the confirmation gives the count')
    await page.getByRole('button', { name: 'Retry 3 jobs' }).click()
    await waitFor(async () => /3 of 3 matching jobs retried/.test(await page.locator('#list-message').textContent() ?? ''), 10_000, 'the outcome')
    t.pass('the page reports 3 of 3 retried')

    const { body: all } = await api(server.url, '/api/jobs?name=retry-me&limit=100')
    const retries = all.jobs.filter((j: { retryOf: number | null }) => j.retryOf !== null).map((j: { retryOf: number }) => j.retryOf).sort()
    t.same(retries, [...failed].sort(), 'one retry for each failed job, and no other')
    t.equal((await api(server.url, `/api/jobs/${done.id}`)).body.status, 'done', 'the done job is left alone')
    t.equal((await api(server.url, `/api/jobs/${canceled.id}`)).body.status, 'canceled', 'the canceled job (outside the filter) is left alone')
    t.equal((await api(server.url, '/api/jobs/counts?name=retry-me&status=failed')).body.total, 3, 'the failed jobs stay failed (a retry is a new job)')
    // The retries would each compute for a second: stop them.
    const stop = await api(server.url, '/api/jobs/bulk', { body: { action: 'cancel', filter: { name: 'retry-me', status: ['pending', 'running'] } } })
    t.equal(stop.body.matched, 3, 'the three retries canceled through the API')
    t.same([...errors], [], 'no console errors')
    t.same(dialogs, [], 'no browser dialogs: the confirmation is the page\'s own')
  })

  t.test('the throughput chart is drawn from the API', async (t) => {
    const { page, errors } = await open(t, browser, server.url)
    const svg = page.locator('#throughput-chart svg')
    await svg.waitFor({ state: 'visible', timeout: 5000 })
    const { body } = await api(server.url, '/api/stats/throughput?minutes=60')
    const done = body.minutes.reduce((sum: number, m: { done: number }) => sum + m.done, 0)
    t.ok(done >= 2, `${done} jobs done in the last hour`)
    t.match(await svg.locator('title').textContent(), new RegExp(`last hour: ${done} done`), 'the chart says how many')
    t.ok(await svg.locator('rect.bar-done').count() >= 1, 'with a bar')
    t.match(await page.locator('#queue').textContent(), /^queue: \d+ pending · \d+ running$/, 'and the queue')
    t.same(errors, [], 'no console errors')
  })
}
