import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import t from 'tap'
import { api, startServer } from '../fixtures/helpers.js'

// Swagger UI in a real headless Chromium against the built server (npm run build first), under the CSP the
// server sends: the page must render every operation without a single CSP violation or script error.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

if (!existsSync(CHROMIUM)) {
  t.plan(0, `no Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`)
} else {
  t.test('/docs renders every operation under its Content-Security-Policy', async (t) => {
    const server = await startServer(t, { MAX_CONCURRENCY: '1', WARM_SPARE: 'false' })
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] })
    t.teardown(() => browser.close())
    const page = await browser.newPage()
    const problems: string[] = []
    page.on('console', (msg) => { if (msg.type() === 'error') problems.push(msg.text()) })
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))

    const response = await page.goto(`${server.url}/docs`)
    t.equal(response?.status(), 200, '/docs answers 200')
    t.match(response?.headers()['content-security-policy'], /script-src 'self'/, 'under a CSP')
    await page.locator('.opblock').first().waitFor({ timeout: 15_000 })
    const paths = await page.locator('.opblock-summary-path').allTextContents()
    const spec = (await api(server.url, '/docs/json')).body
    const operations = Object.values<Record<string, unknown>>(spec.paths).reduce((n, item) => n + Object.keys(item).length, 0)
    t.equal(paths.length, operations, `all ${operations} operations of the spec are shown`)
    t.ok(paths.includes('/api/jobs/{id}/cancel'), 'including the job routes')
    t.equal(await page.locator('.btn.authorize').count(), 1, 'the Authorize button for the bearer token is there')
    t.same(problems, [], 'no CSP violation or script error in the console')
  })
}
