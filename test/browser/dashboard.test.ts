import { existsSync } from 'node:fs'
import { type Browser, chromium, type Page } from 'playwright-core'
import type { Test } from 'tap'
import t from 'tap'
import { api, type ServerProcess, startServer, waitFor } from '../fixtures/helpers.js'

// The dashboard in a real headless Chromium against the built server (npm run build first).
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** A page that records what would be a bug: console errors, uncaught exceptions, alert/confirm dialogs. */
interface Watched { page: Page, errors: string[], dialogs: string[] }

async function open (t: Test, browser: Browser, url: string, options: { width?: number, allow?: RegExp } = {}): Promise<Watched> {
  const context = await browser.newContext({ viewport: { width: options.width ?? 1280, height: 900 } })
  t.teardown(() => context.close())
  const page = await context.newPage()
  const errors: string[] = []
  const dialogs: string[] = []
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !(options.allow && options.allow.test(msg.text()))) errors.push(msg.text())
  })
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`))
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message())
    dialog.dismiss().catch(() => {})
  })
  await page.goto(url)
  await page.locator('#live[data-state="live"]').waitFor({ timeout: 10_000 })
  return { page, errors, dialogs }
}

const row = (page: Page, id: number) => page.locator(`#jobs tbody tr[data-id="${id}"]`)

/** Waits until the row of job `id` shows `status`; returns how long that took. */
async function waitStatus (page: Page, id: number, status: string, timeout = 30_000): Promise<number> {
  const started = Date.now()
  await page.locator(`#jobs tbody tr[data-id="${id}"][data-status="${status}"]`).waitFor({ timeout })
  return Date.now() - started
}

if (!existsSync(CHROMIUM)) {
  t.plan(0, `no Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`)
} else {
  let browser: Browser
  let server: ServerProcess

  t.before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
    })
    server = await startServer(t, { MAX_CONCURRENCY: '2' })
  })
  t.teardown(async () => { await browser?.close() })

  t.test('a job started by clicking reaches done on the page without a reload', async (t) => {
    const { page, errors, dialogs } = await open(t, browser, server.url)
    await page.evaluate(() => { (window as unknown as { marker: number }).marker = 42 })
    await page.getByLabel('Matrix size n').fill('50')
    await page.getByLabel('Steps').fill('30')
    await page.getByLabel('Name (optional)').fill('clicked')
    await page.getByRole('button', { name: 'Start job' }).click()
    const message = page.locator('#form-message')
    await waitFor(async () => /Job \d+ submitted/.test(await message.textContent() ?? ''), 10_000, 'the submitted message')
    const id = Number((await message.textContent())?.match(/Job (\d+)/)?.[1])
    t.ok(id > 0, `job ${id} submitted`)
    await waitStatus(page, id, 'done')
    const tr = row(page, id)
    t.equal(await tr.locator('.badge').textContent(), 'done', 'status badge says done')
    t.equal(await tr.locator('.step').textContent(), 'step 30 of 30', 'progress text')
    t.match(await tr.locator('td[data-label="GF/s"]').textContent(), /^\d+\.\d\d$/, 'GF/s from the result')
    t.equal(await page.evaluate(() => (window as unknown as { marker?: number }).marker), 42, 'the page was never reloaded')
    t.equal(await tr.locator('button[data-action="delete"]').isVisible(), true, 'a finished job offers Delete')
    t.equal(await tr.locator('button[data-action="cancel"]').isVisible(), false, 'and no Cancel')

    await tr.getByRole('button', { name: `Details of job ${id}` }).click()
    const dialog = page.locator('dialog#detail')
    await dialog.waitFor({ state: 'visible' })
    t.match(await dialog.textContent(), /lyapunov/, 'the detail shows the result')
    t.match(await dialog.textContent(), /relative error/, 'with the relative error to theory')
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
    t.same(errors, [], 'no console errors')
    t.same(dialogs, [], 'no dialogs')
  })

  t.test('cancel in a second page shows canceled in the first', async (t) => {
    const first = await open(t, browser, server.url)
    const second = await open(t, browser, server.url)
    const { body: job } = await api(server.url, '/api/jobs', { body: { n: 300, steps: 2000, name: 'long' } })
    await waitStatus(first.page, job.id, 'running')
    await waitStatus(second.page, job.id, 'running')
    await first.page.waitForFunction((id) => {
      const text = document.querySelector(`#jobs tbody tr[data-id="${id}"] .step`)?.textContent ?? ''
      return !/^step 0 /.test(text)
    }, job.id, { timeout: 30_000 })
    t.pass('the first page shows progress')
    await row(second.page, job.id).locator('button[data-action="cancel"]').click()
    const took = await waitStatus(first.page, job.id, 'canceled', 10_000)
    t.ok(took < 5000, `the first page showed canceled ${took} ms after the click`)
    t.comment(`cancel click in one page → canceled in the other: ${took} ms`)
    await waitStatus(second.page, job.id, 'canceled', 2000)
    t.equal(await row(first.page, job.id).locator('button[data-action="retry"]').isVisible(), true, 'a canceled job offers Retry')
    t.same([...first.errors, ...second.errors], [], 'no console errors')
  })

  t.test('a name full of markup is shown as text and runs nothing', async (t) => {
    const { page, errors, dialogs } = await open(t, browser, server.url)
    const name = '<img src=x onerror=alert(1)><script>alert(2)</script>'
    const { body: job } = await api(server.url, '/api/jobs', { body: { n: 20, steps: 5, name } })
    await row(page, job.id).waitFor()
    t.equal(await row(page, job.id).locator('td.name button').textContent(), name, 'the name is displayed literally')
    t.equal(await page.locator('#jobs img, #jobs script').count(), 0, 'no element was created from it')
    await row(page, job.id).locator('td.name button').click()
    t.match(await page.locator('#detail-body').textContent(), name, 'literally in the detail too')
    await page.locator('#detail-close').click()
    await page.waitForTimeout(300)
    t.same(dialogs, [], 'no alert fired')
    t.same(errors, [], 'no console errors')
    const res = await fetch(server.url)
    t.match(res.headers.get('content-security-policy'), /script-src 'self'/, 'the page is served with a CSP forbidding inline script')
  })

  t.test('what the API refuses is shown inline, in its own words', async (t) => {
    // The refused request itself is logged by Chromium as a failed resource; that one is expected.
    const { page, errors } = await open(t, browser, server.url, { allow: /status of 400/ })
    const expected = await api(server.url, '/api/jobs', { body: { type: 'lyapunov', params: { n: 5000, steps: 10 } } })
    t.equal(expected.status, 400, 'the API refuses n=5000')
    await page.getByLabel('Matrix size n').fill('5000')
    await page.getByRole('button', { name: 'Start job' }).click()
    const message = page.locator('#form-message.error')
    await message.waitFor()
    t.equal(await message.textContent(), expected.body.message, 'the API message is shown')
    t.same(errors, [], 'no other console errors')
  })

  t.test('a reload shows every job as it was', async (t) => {
    const { page, errors } = await open(t, browser, server.url)
    const { body } = await api(server.url, '/api/jobs?limit=50')
    await page.reload()
    await page.locator('#live[data-state="live"]').waitFor()
    await waitFor(async () => (await page.locator('#jobs tbody tr').count()) === body.jobs.length, 5000, 'all rows')
    for (const job of body.jobs.filter((j: { status: string }) => ['done', 'failed', 'canceled'].includes(j.status))) {
      t.equal(await row(page, job.id).getAttribute('data-status'), job.status, `job ${job.id} is ${job.status}`)
    }
    t.same(errors, [], 'no console errors')
  })

  t.test('keyboard only, and readable at 360 px', async (t) => {
    const { page, errors } = await open(t, browser, server.url, { width: 360 })
    const scroll = await page.evaluate(() => document.documentElement.scrollWidth)
    t.ok(scroll <= 360, `no horizontal scrolling at 360 px (${scroll})`)
    const first = page.locator('#jobs tbody tr td.name button').first()
    await first.focus()
    await page.keyboard.press('Enter')
    await page.locator('dialog#detail').waitFor({ state: 'visible' })
    await page.keyboard.press('Escape')
    await page.locator('dialog#detail').waitFor({ state: 'hidden' })
    t.ok(await first.evaluate((el) => el === document.activeElement), 'focus returns to the row after the dialog closes')
    const outline = await first.evaluate((el) => getComputedStyle(el).outlineStyle)
    t.not(outline, 'none', 'the focused button has a visible outline')
    t.same(errors, [], 'no console errors')
  })

  t.test('older jobs load page by page', async (t) => {
    // Enough jobs for more than one page of 50; canceled at once so they do not keep the workers busy.
    for (let i = 0; i < 55; i++) {
      const { body } = await api(server.url, '/api/jobs', { body: { n: 2, steps: 1, name: `bulk ${i}`, priority: -1 } })
      await api(server.url, `/api/jobs/${body.id}/cancel`, { method: 'POST' })
    }
    const { body: all } = await api(server.url, '/api/jobs?limit=500')
    const { page, errors } = await open(t, browser, server.url)
    await waitFor(async () => (await page.locator('#jobs tbody tr').count()) === 50, 5000, 'the first page')
    t.pass('the first page shows 50 jobs')
    await page.getByRole('button', { name: 'Load older jobs' }).click()
    await waitFor(async () => (await page.locator('#jobs tbody tr').count()) === all.jobs.length, 5000, 'every job')
    const ids = await page.locator('#jobs tbody tr').evaluateAll((trs) => trs.map((tr) => Number((tr as HTMLElement).dataset.id)))
    t.same(ids, all.jobs.map((j: { id: number }) => j.id), 'every job, newest first')
    t.equal(await page.locator('#more').isVisible(), false, 'no more pages')
    t.same(errors, [], 'no console errors')
  })

  t.test('with API_TOKEN set, the page asks for the token once and retries', async (t) => {
    const locked = await startServer(t, { API_TOKEN: 'let-me-in' })
    const { page, errors } = await open(t, browser, locked.url, { allow: /status of 401/ })
    await page.getByLabel('Matrix size n').fill('10')
    await page.getByLabel('Steps').fill('3')
    await page.getByRole('button', { name: 'Start job' }).click()
    await page.locator('#token-panel').waitFor({ state: 'visible' })
    await page.getByLabel('API token', { exact: true }).fill('let-me-in')
    await page.getByRole('button', { name: 'Save token' }).click()
    await waitFor(async () => /Job \d+ submitted/.test(await page.locator('#form-message').textContent() ?? ''), 10_000, 'the submit to go through')
    t.pass('the submit went through with the token')
    t.equal(await page.evaluate(() => localStorage.getItem('nonstop.apiToken')), 'let-me-in', 'the token is kept for next time')
    t.equal(await page.locator('#token-panel').isVisible(), false, 'the token form is gone')
    t.same(errors, [], 'no other console errors')
  })
}
