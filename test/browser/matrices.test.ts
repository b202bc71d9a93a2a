import { existsSync } from 'node:fs'
import { type Browser, chromium } from 'playwright-core'
import t from 'tap'
import { matrixSha256 } from '../../src/matrices/matrix.js'
import { api, type ServerProcess, startServer } from '../fixtures/helpers.js'

// The Matrices panel in a real headless Chromium against the built server (npm run build first).
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

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
    server = await startServer(t, { MAX_CONCURRENCY: '1' })
  })
  t.teardown(async () => { await browser?.close() })

  t.test('upload a CSV with the file picker, see it listed, preview its corner, download it, delete it', async (t) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true })
    t.teardown(() => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()) })
    await page.goto(server.url)
    const rows = Array.from({ length: 10 }, (_, i) => Array.from({ length: 9 }, (_, j) => i * 9 + j + 0.5))
    const csv = 'a,b,c,d,e,f,g,h,i\r\n' + rows.map((r) => r.join(',')).join('\r\n') + '\r\n'
    await page.locator('#matrix-file').setInputFiles({ name: 'grid.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) })
    const row = page.locator('#matrices tbody tr', { hasText: 'grid.csv' })
    await row.waitFor({ timeout: 10_000 })
    t.match(await row.innerText(), /10×9/, 'listed with its shape')
    const listed = (await api(server.url, '/api/matrices')).body.matrices[0]
    t.equal(listed.sha256, matrixSha256(new Float64Array(rows.flat())), 'stored with the sha256 of the numbers')

    await row.getByRole('button', { name: 'grid.csv' }).click()
    const corner = page.locator('table.matrix-corner tr')
    await corner.first().waitFor()
    t.equal(await corner.count(), 8, 'preview: 8 rows')
    t.equal(await corner.first().locator('td').count(), 8, 'preview: 8 columns')
    t.equal(await corner.first().locator('td').first().innerText(), '0.5', 'preview: the first number')

    const [download] = await Promise.all([page.waitForEvent('download'), row.getByRole('link', { name: 'csv' }).click()])
    t.equal(download.suggestedFilename(), 'grid.csv', 'download named after the matrix')

    await row.getByRole('button', { name: /delete/ }).click()
    await row.waitFor({ state: 'detached', timeout: 10_000 })
    t.equal((await api(server.url, '/api/matrices')).body.matrices.length, 0, 'deleted on the server')
    t.same(errors, [], 'no console errors')
  })

  t.test('run matmul on an uploaded CSV from the form (pickers list it) and download the result from the job', async (t) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true })
    t.teardown(() => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()) })
    await page.goto(server.url)
    // A 3×3 integer matrix: its square is exact.
    const a = [[1, 2, 0], [0, 1, 3], [4, 0, 1]]
    await page.locator('#matrix-file').setInputFiles({ name: 'small.csv', mimeType: 'text/csv', buffer: Buffer.from(a.map((r) => r.join(',')).join('\n')) })
    await page.locator('#matrices tbody tr', { hasText: 'small.csv' }).waitFor({ timeout: 10_000 })
    const id = (await api(server.url, '/api/matrices')).body.matrices[0].id as number

    await page.locator('#f-type').selectOption('matmul')
    const list = page.locator('#submit [data-matrix-list]')
    await list.waitFor()
    await page.locator('#submit small', { hasText: `${id}: small.csv (3×3)` }).waitFor({ timeout: 10_000 })
    await list.fill(`${id}, ${id}`)
    await page.getByRole('button', { name: 'Start job' }).click()
    await page.locator('#form-message', { hasText: /submitted/ }).waitFor({ timeout: 10_000 })
    const job = (await api(server.url, '/api/jobs')).body.jobs[0]
    t.same(job.params, { matrices: [id, id] }, 'the ids went as a list of numbers')

    await page.locator('#f-type').selectOption('matpow')
    const picker = page.locator('#submit select[data-matrix-picker]')
    await picker.locator('option', { hasText: 'small.csv' }).waitFor({ state: 'attached', timeout: 10_000 })
    t.ok(await picker.locator(`option[value="${id}"]`).count(), 'matpow\'s matrix field is a picker of the stored matrices')

    const done = await waitForDone(job.id)
    const square = a.map((row) => a[0].map((_, j) => row.reduce((s, x, k) => s + x * a[k][j], 0)))
    t.equal(done.result.sha256, matrixSha256(new Float64Array(square.flat())), 'A·A, exactly')
    await page.locator('#jobs tbody tr').first().locator('button.link').click() // the only job
    const link = page.locator('#detail .result-matrix a', { hasText: 'csv' })
    await link.waitFor({ timeout: 10_000 })
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()])
    const path = await download.path()
    t.ok(path, 'the result matrix downloads from the job\'s detail')
    t.same(errors, [], 'no console errors')
  })

  async function waitForDone (id: number): Promise<any> {
    for (let i = 0; i < 600; i++) {
      const job = (await api(server.url, `/api/jobs/${id}`)).body
      if (job.status === 'done' || job.status === 'failed') return job
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    throw new Error(`job ${id} did not end`)
  }
}
