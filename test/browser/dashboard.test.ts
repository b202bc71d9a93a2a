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

/** A job as the API returns it, for pages fed by a scripted API. */
function fakeJob (fields: Record<string, unknown>): Record<string, any> {
  const now = new Date().toISOString()
  return {
    id: 1,
    type: 'lyapunov',
    name: 'big',
    status: 'running',
    progress: 0,
    step: 0,
    steps: 3,
    params: { n: 1500, steps: 3, seed: 7 },
    priority: 0,
    attempts: 1,
    pid: 4242,
    cancelRequested: false,
    timeoutSeconds: null,
    retryOf: null,
    result: null,
    error: null,
    version: 1,
    createdAt: now,
    startedAt: now,
    finishedAt: null,
    updatedAt: now,
    heartbeatAt: now,
    ...fields
  }
}

/**
 * Serves the page's API from `state` instead of a server: GET /api/jobs lists state.jobs, and each connection to
 * /api/events delivers them as `job` events, then ends with `retry: 100`, so the page reconnects (and refetches)
 * a tenth of a second later and sees whatever the test has put in `state` meanwhile.
 */
async function scriptApi (page: Page, state: { jobs: Array<Record<string, any>> }): Promise<{ delivered: () => Promise<void> }> {
  let served = 0
  await page.route(/\/api\/jobs\?/, (route) => route.fulfill({ json: { jobs: state.jobs, nextCursor: null } }))
  await page.route(/\/api\/events$/, (route) => {
    served++; return route.fulfill({
      status: 200,
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-store' },
      body: 'retry: 100\n\n' + state.jobs.map((job) => `id: ${job.version}\nevent: job\ndata: ${JSON.stringify(job)}\n\n`).join('')
    })
  })
  return {
    /** Resolves once the page has certainly received the current state (two streams served since the call). */
    async delivered () {
      const from = served
      await waitFor(() => served >= from + 2, 5000, 'the page to reconnect')
      await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(resolve)))
    }
  }
}

/** Seconds in a duration as the page prints it ("9.9 s", "42 s", "2 m 00 s", "1 h 05 m"); null for "—". */
function seconds (text: string | null): number | null {
  const m = /^(?:(\d+) h )?(?:(\d+) m)? ?(?:(\d+(?:\.\d)?) s)?$/.exec((text ?? '').trim())
  if (!m || (!m[1] && !m[2] && !m[3])) return null
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0)
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
    t.equal(await tr.locator('.step').textContent(), '100.0 % · step 30 of 30', 'progress text')
    t.equal(await tr.locator('progress').evaluate((bar) => (bar as HTMLProgressElement).position), 1, 'a full bar')
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
      return !/^0\.0 %/.test(text)
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

  t.test('an invalid form shows every problem at once, in plain words, and sends nothing', async (t) => {
    const { page, errors } = await open(t, browser, server.url)
    const posts: string[] = []
    page.on('request', (req) => { if (req.method() === 'POST') posts.push(req.url()) })
    await page.getByLabel('Matrix size n').fill('5000')
    await page.getByLabel('Steps').fill('0')
    await page.getByLabel('Priority (optional)').fill('1.5')
    await page.getByLabel('Seed (optional)').fill('-1')
    await page.getByRole('button', { name: 'Start job' }).click()
    const message = page.locator('#form-message.error')
    await message.waitFor()
    const expected = [
      'Matrix size n: a whole number from 1 to 2000',
      'Steps: a whole number from 1 to 10000',
      'Seed: a whole number from 0 to 4294967295',
      'Priority: a whole number from -1000000 to 1000000'
    ]
    t.same(await page.locator('#submit .field-error').allTextContents(), expected, 'each field says what it needs, under it')
    const invalid = await page.locator('#submit input[aria-invalid="true"]').evaluateAll((inputs) => inputs.map((i) => (i as HTMLInputElement).name))
    t.same(invalid, ['n', 'steps', 'seed', 'priority'], 'every invalid field is marked, the valid name is not')
    const summary = await message.textContent() ?? ''
    for (const text of expected) t.ok(summary.includes(text), `the form's message lists "${text}"`)
    const border = await page.getByLabel('Steps').evaluate((el) => getComputedStyle(el).borderColor)
    const okBorder = await page.getByLabel('Name (optional)').evaluate((el) => getComputedStyle(el).borderColor)
    t.not(border, okBorder, 'an invalid field looks different from a valid one')
    t.ok(await page.getByLabel('Matrix size n').evaluate((el) => el === document.activeElement), 'the first invalid field has the focus')
    t.same(posts, [], 'nothing was sent')

    await page.getByLabel('Matrix size n').fill('20')
    t.equal(await page.getByLabel('Matrix size n').getAttribute('aria-invalid'), null, 'editing a field clears its mark')
    t.equal(await page.locator('#form-message').textContent(), '', 'and the error line: the user is acting on it')
    t.equal(await page.locator('#submit .field-error').count(), 3, 'the other fields keep theirs')
    t.same(errors, [], 'no console errors')
  })

  t.test('what the API refuses is shown inline, in its own words, on the field it names', async (t) => {
    // The refused request itself is logged by Chromium as a failed resource; that one is expected.
    const { page, errors } = await open(t, browser, server.url, { allow: /status of 400/ })
    const expected = await api(server.url, '/api/jobs', { body: { type: 'lyapunov', params: { n: 5000, steps: 10 } } })
    t.equal(expected.status, 400, 'the API refuses n=5000')
    // A page older than the server's limits: its own rule lets 5000 through.
    await page.getByLabel('Matrix size n').evaluate((input) => input.removeAttribute('max'))
    await page.getByLabel('Matrix size n').fill('5000')
    await page.getByRole('button', { name: 'Start job' }).click()
    const message = page.locator('#form-message.error')
    await message.waitFor()
    t.equal(await message.textContent(), expected.body.message, 'the API message is shown')
    t.equal(await page.getByLabel('Matrix size n').getAttribute('aria-invalid'), 'true', 'on the field it names')
    t.match(await page.locator('#submit .field-error').textContent(), /^Matrix size n: must be <= 2000/, 'in plain words under it')
    t.same(errors, [], 'no other console errors')
  })

  t.test('a status message goes away by itself', async (t) => {
    const { page, errors } = await open(t, browser, server.url)
    await page.getByLabel('Matrix size n').fill('10')
    await page.getByLabel('Steps').fill('2')
    await page.getByRole('button', { name: 'Start job' }).click()
    const message = page.locator('#form-message')
    await waitFor(async () => /Job \d+ submitted/.test(await message.textContent() ?? ''), 10_000, 'the submitted message')
    const shown = Date.now()
    await waitFor(async () => (await message.textContent()) === '', 15_000, 'the message to clear')
    const lasted = Date.now() - shown
    t.ok(lasted >= 3000, `it stayed long enough to read (${lasted} ms)`)
    t.ok(lasted < 10_000, `then went away by itself (${lasted} ms)`)
    t.same(errors, [], 'no console errors')
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

  t.test('a big job in its first step: bar, ETA and GF/s follow its fractional progress', async (t) => {
    const started = Date.now() - 12_000
    const state = { jobs: [fakeJob({ startedAt: new Date(started).toISOString(), updatedAt: new Date(started + 12_000).toISOString(), progress: 17.7, step: 0 })] }
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    await page.clock.setFixedTime(started + 12_200)
    await scriptApi(page, state)
    await page.goto(server.url)
    const tr = row(page, 1)
    await tr.waitFor()
    const position = await tr.locator('progress').evaluate((bar) => (bar as HTMLProgressElement).position)
    t.ok(Math.abs(position - 0.177) < 0.001, `the bar is at 17.7 %, not at step 0 (${position})`)
    t.equal(await tr.locator('.step').textContent(), '17.7 % · step 0 of 3', 'the text says both')
    const eta = seconds(await tr.locator('td[data-label="ETA"]').textContent())
    t.ok(eta !== null && Math.abs(eta - 55.6) < 1.5, `an ETA from 17.7 % in 12 s: about 56 s (${eta})`)
    t.match(await tr.locator('td[data-label="GF/s"]').textContent(), /^~\d+\.\d\d$/, 'and an estimated GF/s')

    state.jobs = [fakeJob({ ...state.jobs[0], version: 2, progress: 87, step: 2, updatedAt: new Date(started + 59_000).toISOString() })]
    await page.clock.setFixedTime(started + 59_200)
    await page.waitForFunction(() => document.querySelector('#jobs tbody tr[data-id="1"] .step')?.textContent?.startsWith('87.0 %'), null, { timeout: 5000 })
    const later = await tr.locator('progress').evaluate((bar) => (bar as HTMLProgressElement).position)
    t.ok(Math.abs(later - 0.87) < 0.001, `at 87 % the bar shows 87 %, not 2 of 3 steps (${later})`)
    t.same(errors, [], 'no page errors')
  })

  t.test('the ETA never rises while the job advances at a steady pace', async (t) => {
    // n = 1500, steps = 3, 36 s in all; the page sees the worker's progress about every 2 s, at uneven intervals.
    const started = Date.now() - 60_000
    const total = 36_000
    const state = { jobs: [fakeJob({ startedAt: new Date(started).toISOString(), updatedAt: new Date(started).toISOString() })] }
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    await page.clock.setFixedTime(started + 100)
    const script = await scriptApi(page, state)
    await page.goto(server.url)
    await row(page, 1).waitFor()
    const shown: Array<{ at: number, eta: number | null }> = []
    const eta = async (): Promise<number | null> => seconds(await row(page, 1).locator('td[data-label="ETA"]').textContent())
    let version = 1
    for (let at = 1000; at < total; at += 2000 + ((at / 1000) % 3 - 1) * 300) {
      const progress = Math.round((at / total) * 10000) / 100
      version++
      state.jobs = [fakeJob({ ...state.jobs[0], version, progress, step: Math.floor(progress * 3 / 100), updatedAt: new Date(started + at).toISOString() })]
      await page.clock.setFixedTime(started + at + 100)
      await script.delivered()
      shown.push({ at, eta: await eta() })
      // And what the once-a-second refresh shows just before the next beat.
      await page.clock.setFixedTime(started + at + 900)
      await page.waitForTimeout(1050)
      shown.push({ at: at + 800, eta: await eta() })
    }
    const known = shown.filter((s) => s.eta !== null) as Array<{ at: number, eta: number }>
    t.ok(known.length >= shown.length - 2, `an ETA is shown from the first seconds on (${known.length} of ${shown.length})`)
    const rises = known.filter((s, i) => i > 0 && s.eta > known[i - 1].eta)
    t.same(rises, [], `the ETA never went up: ${known.map((s) => s.eta).join(', ')}`)
    const last = known[known.length - 1]
    t.ok(last && Math.abs(last.eta - (total - last.at) / 1000) <= 2, `and ends near the true time left (${last?.eta} s)`)
    t.same(errors, [], 'no page errors')
  })

  t.test("a finished job's chart ends at 100 %", async (t) => {
    const started = Date.now() - 60_000
    const state = { jobs: [fakeJob({ startedAt: new Date(started).toISOString(), updatedAt: new Date(started + 10_000).toISOString(), progress: 30, step: 0 })] }
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    await scriptApi(page, state)
    await page.goto(server.url)
    await row(page, 1).waitFor()
    for (const [version, progress, at] of [[2, 60, 20_000], [3, 85, 28_000]]) {
      state.jobs = [fakeJob({ ...state.jobs[0], version, progress, step: Math.floor(progress * 3 / 100), updatedAt: new Date(started + at).toISOString() })]
      await page.waitForFunction(([text]) => document.querySelector('#jobs tbody tr[data-id="1"] .step')?.textContent?.startsWith(text), [`${progress}.0 %`], { timeout: 5000 })
    }
    const finished = new Date(started + 33_000).toISOString()
    state.jobs = [fakeJob({ ...state.jobs[0], version: 4, status: 'done', progress: 100, step: 3, pid: null, finishedAt: finished, updatedAt: finished, result: { lyapunov: 3.98, theory: 3.98, trace: 1, elapsedMs: 32_000, gflops: 0.63 } })]
    await page.locator('#jobs tbody tr[data-id="1"][data-status="done"]').waitFor({ timeout: 5000 })
    await row(page, 1).getByRole('button', { name: 'Details of job 1' }).click()
    const svg = page.locator('#detail .chart-svg')
    await svg.waitFor()
    const goal = Number(await svg.locator('line.goal').getAttribute('y1'))
    const points = (await svg.locator('polyline').getAttribute('points') ?? '').split(' ').map((p) => p.split(',').map(Number))
    t.equal(points.length, 4, 'the three samples seen and the finish')
    t.equal(points[points.length - 1][1], goal, 'the line ends on the 100 % line')
    t.ok(points[0][1] > goal, 'and started below it')
    t.match(await svg.locator('title').textContent(), /30\.0 % to 100\.0 %/, 'its title says so')
  })

  t.test('columns keep their width whatever the rows hold, and times stay on one line', async (t) => {
    const started = Date.now() - 65_000
    const state = { jobs: [fakeJob({ status: 'pending', name: 'a', pid: null, startedAt: null, attempts: 0 })] }
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    const script = await scriptApi(page, state)
    await page.goto(server.url)
    await row(page, 1).waitFor()
    const widths = async (): Promise<number[]> => page.locator('#jobs thead th').evaluateAll((ths) => ths.map((th) => Math.round(th.getBoundingClientRect().width)))
    const before = await widths()
    state.jobs = [fakeJob({ version: 2, name: 'w'.repeat(200), progress: 45.6, step: 1, startedAt: new Date(started).toISOString(), updatedAt: new Date(started + 60_000).toISOString(), attempts: 12 })]
    await script.delivered()
    t.match(await row(page, 1).locator('td[data-label="elapsed"]').textContent(), /^1 m \d\d s$/, 'the running job shows a long elapsed time')
    t.same(await widths(), before, 'the columns kept their widths when a pending job with a short name became a running one with a long name')

    // A text that wraps is drawn as more than one line box.
    const lines = async (locator: ReturnType<Page['locator']>): Promise<number[]> => locator.evaluateAll((els) => els.map((el) => {
      const range = document.createRange()
      range.selectNodeContents(el)
      return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size
    }))
    t.same(await lines(row(page, 1).locator('td.num, .step')), [1, 1, 1, 1, 1], 'elapsed, ETA, GF/s, attempts and the progress text each fit on one line')
    await page.setViewportSize({ width: 360, height: 800 })
    await row(page, 1).getByRole('button', { name: 'Details of job 1' }).click()
    const timings = page.locator('#detail .detail-section').filter({ has: page.locator('h3', { hasText: 'Timings' }) }).locator('dd')
    await timings.first().waitFor()
    // The dialog is drawn before its values arrive: an empty value is no line at all, so wait until all are there.
    const counts = await waitFor(async () => {
      const now = await lines(timings)
      return now.length >= 4 && now.every((n) => n > 0) ? now : undefined
    }, 10_000, 'every timing to be drawn')
    t.ok(counts.length >= 4 && counts.every((n) => n === 1), `at 360 px every timing in the detail is on one line (${counts.join(', ')})`)
    const overflow = await page.locator('#detail').evaluate((el) => el.scrollWidth - el.clientWidth)
    t.equal(overflow, 0, 'and the detail still fits the screen')
  })
  t.test('the Nodes panel lists the servers sharing the database, a silent one marked, and fits 360 px', async (t) => {
    const now = Date.now()
    const node = (nodeId: string, fields: Record<string, unknown>) => ({
      nodeId, host: nodeId.split(':')[0], pid: 100, startedAt: new Date(now - 3_600_000).toISOString(), heartbeatAt: new Date(now).toISOString(), heartbeatAgeMs: 1200, running: 0, self: false, ...fields
    })
    const nodes = [node('alpha:3000', { running: 2, self: true }), node('beta:3000', { pid: 77, heartbeatAgeMs: 125_000, running: 1 })]
    for (const width of [1280, 360]) {
      const context = await browser.newContext({ viewport: { width, height: 900 } })
      t.teardown(() => context.close())
      const page = await context.newPage()
      const errors: string[] = []
      page.on('pageerror', (err) => errors.push(err.message))
      await page.route(/\/api\/nodes$/, (route) => route.fulfill({ json: { nodes } }))
      await page.goto(server.url)
      const rows = page.locator('#nodes-table tbody tr')
      await rows.nth(1).waitFor()
      t.equal(await page.locator('#nodes-summary').textContent(), '2 nodes · 3 running · 1 silent', `${width} px: the summary`)
      t.match(await rows.nth(0).locator('td').first().textContent(), /^alpha:3000 \(this server\)$/, `${width} px: this server is marked`)
      t.equal(await rows.nth(1).locator('td[data-label="last heartbeat"]').textContent(), '2 m 05 s ago', `${width} px: the heartbeat age`)
      t.equal(await rows.nth(1).getAttribute('class'), 'node-silent', `${width} px: a node silent for two minutes is marked`)
      t.equal(await rows.nth(0).locator('td[data-label="running jobs"]').textContent(), '2', `${width} px: running jobs`)
      t.ok(await page.locator('#nodes-empty').isHidden(), `${width} px: no empty message`)
      const scroll = await page.evaluate(() => document.documentElement.scrollWidth)
      t.ok(scroll <= width, `${width} px: no horizontal scrolling (${scroll})`)
      t.same(errors, [], `${width} px: no page errors`)
    }
  })

  t.test('with no node registered the Nodes panel says so', async (t) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    await page.route(/\/api\/nodes$/, (route) => route.fulfill({ json: { nodes: [] } }))
    await page.goto(server.url)
    await page.locator('#nodes-empty').waitFor()
    t.ok(await page.locator('#nodes-table').isHidden(), 'no empty table')
    t.equal(await page.locator('#nodes-summary').textContent(), '', 'no summary')
    t.same(errors, [], 'no page errors')
  })
}
