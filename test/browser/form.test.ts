import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Browser, chromium } from 'playwright-core'
import t from 'tap'
import { api, ROOT, type ServerProcess, startServer, waitFor } from '../fixtures/helpers.js'

// The New job form follows the type, in a real headless Chromium against the built server, with a user type loaded
// from a temporary JOB_TYPES_DIR (npm run build first).
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

if (!existsSync(CHROMIUM)) {
  t.plan(0, `no Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`)
} else {
  let browser: Browser
  let server: ServerProcess

  t.before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nonstop-types-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    copyFileSync(join(ROOT, 'test/fixtures/job-types/counter.mjs'), join(dir, 'counter.mjs'))
    writeFileSync(join(dir, 'broken.mjs'), 'throw new Error("needs a GPU")\n')
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
    })
    server = await startServer(t, { MAX_CONCURRENCY: '2', JOB_TYPES_DIR: dir })
  })
  t.teardown(async () => { await browser?.close() })

  t.test('the type selector lists every type; the fields follow the chosen type\'s schema', async (t) => {
    const context = await browser.newContext()
    t.teardown(() => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('console', (msg) => { if (msg.type() === 'error' && !/status of 400/.test(msg.text())) errors.push(msg.text()) })
    page.on('pageerror', (err) => errors.push(err.message))
    await page.goto(server.url)
    const select = page.getByLabel('Job type')
    await page.locator('#f-type option[value="counter"]').waitFor({ state: 'attached' })
    const options = await page.locator('#f-type option').evaluateAll((els) => els.map((o) => [(o as HTMLOptionElement).value, o.textContent, (o as HTMLOptionElement).disabled]))
    t.same(options.map((o) => o[0]), ['lyapunov', 'matmul', 'matpow', 'broken', 'counter'], 'built-ins, then user modules')
    t.match(options[3], ['broken', /unavailable: needs a GPU/, true], 'the broken module is shown, disabled, with its error')
    t.equal(await select.inputValue(), 'lyapunov', 'lyapunov is chosen first')
    t.ok(await page.getByLabel('Matrix size n').isVisible(), 'lyapunov\'s fields are shown')
    t.match(await page.locator('#f-type-description').textContent(), /Lyapunov exponent of a product/, 'with its description')

    await select.selectOption('counter')
    t.match(await page.locator('#f-type-description').textContent(), /Sums squares/, 'the description follows the type')
    t.equal(await page.getByLabel('Matrix size n').count(), 0, 'lyapunov\'s fields are gone')
    const count = page.locator('#type-fields input[name="count"]')
    t.equal(await count.getAttribute('type'), 'number', 'integer → number input')
    t.equal(await count.getAttribute('min'), '1', 'with its minimum')
    t.equal(await count.getAttribute('max'), '100000', 'and maximum')
    t.equal(await count.inputValue(), '100', 'and its default')
    t.equal(await page.locator('#type-fields input[name="label"]').getAttribute('type'), 'text', 'string → text input')
    const mode = page.locator('#type-fields select[name="mode"]')
    t.same(await mode.locator('option').allTextContents(), ['fast', 'slow'], 'enum → select with its values')
    t.equal(await page.locator('#type-fields input[name="verbose"]').getAttribute('type'), 'checkbox', 'boolean → checkbox')

    // An invalid value: the generated field carries its schema's bounds, so the page says what it needs before sending.
    await count.fill('0')
    await page.getByRole('button', { name: 'Start job' }).click()
    const message = page.locator('#form-message.error')
    await message.waitFor()
    t.match(await message.textContent(), /^count: a whole number from 1 to \d+$/, 'the field and its rule, in plain words')
    t.equal(await count.getAttribute('aria-invalid'), 'true', 'the field is marked')

    await count.fill('12')
    await page.locator('#type-fields input[name="unitMs"]').fill('0')
    await mode.selectOption('slow')
    await page.locator('#type-fields input[name="verbose"]').check()
    await page.getByRole('button', { name: 'Start job' }).click()
    const submitted = await waitFor(async () => /Job (\d+) submitted/.exec(await page.locator('#form-message').textContent() ?? ''), 10_000, 'the submit')
    const id = Number(submitted[1])
    const job = await waitFor(async () => { const j = (await api(server.url, `/api/jobs/${id}`)).body; return j.status === 'done' && j }, 30_000, 'the job to finish')
    t.same(job.params, { count: 12, unitMs: 0, label: 'sum', mode: 'slow', verbose: true }, 'the params as the form typed them')
    t.same(job.result, { sum: 506, terms: 12 }, 'the user type ran')
    await page.locator(`#jobs tbody tr[data-id="${id}"][data-status="done"]`).waitFor({ timeout: 10_000 })
    t.same(errors, [], 'no console errors')
  })
}
