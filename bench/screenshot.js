// Renders docs/dashboard.png: starts the built server on a free loopback port with a throw-away database,
// submits a few jobs (done, canceled, failed, running, pending), and photographs the dashboard in headless
// Chromium.
//
//   npm run build && node bench/screenshot.js [out.png] [--width=1280] [--detail]
//
// --width sets the viewport width (360 shows the phone layout); --detail photographs a job's detail dialog.
//
// Needs /usr/bin/chromium (apt-get install -y chromium) or CHROMIUM_PATH.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const args = process.argv.slice(2)
const out = args.find((a) => !a.startsWith('--')) ?? join(ROOT, 'docs/dashboard.png')
const option = (name, fallback) => Number(args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback)
const width = option('width', 1280)
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
if (!existsSync(executablePath)) {
  console.error(`no Chromium at ${executablePath}; apt-get install -y chromium or set CHROMIUM_PATH`)
  process.exit(2)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function freePort () {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  await once(server, 'close')
  return port
}

const dir = mkdtempSync(join(tmpdir(), 'nonstop-shot-'))
const port = await freePort()
const url = `http://127.0.0.1:${port}`
const server = spawn(process.execPath, [join(ROOT, 'dist/server.js')], {
  cwd: dir,
  env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), DB_PATH: join(dir, 'shot.db'), LOG_LEVEL: process.env.SHOT_LOG ? 'info' : 'warn', MAX_CONCURRENCY: '2', API_TOKEN: '' },
  stdio: ['ignore', process.env.SHOT_LOG ? 'inherit' : 'ignore', 'inherit']
})
let browser
try {
  const post = async (path, body) => {
    const res = await fetch(url + path, {
      method: 'POST',
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined
    })
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`)
    return res.json()
  }
  const get = async (path) => (await fetch(url + path)).json()
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break
    } catch {}
    if (i > 200) throw new Error('server did not start')
    await sleep(50)
  }
  const waitStatus = async (id, statuses) => {
    for (let i = 0; i < 1200; i++) {
      const job = await get(`/api/jobs/${id}`)
      if (statuses.includes(job.status)) return job
      await sleep(50)
    }
    throw new Error(`job ${id} never reached ${statuses}`)
  }

  browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
  })
  const page = await browser.newPage({ viewport: { width, height: 800 }, deviceScaleFactor: 1, colorScheme: 'light' })
  await page.goto(url)
  await page.waitForSelector('#live[data-state="live"]')

  const a = await post('/api/jobs', { n: 120, steps: 60, seed: 7, name: 'warm-up 120×120' })
  await waitStatus(a.id, ['done'])
  const b = await post('/api/jobs', { n: 200, steps: 80, seed: 11, name: 'baseline n=200' })
  await waitStatus(b.id, ['done'])
  const c = await post('/api/jobs', { n: 400, steps: 3000, seed: 3, name: 'long run, canceled' })
  await waitStatus(c.id, ['running'])
  await sleep(1500)
  await post(`/api/jobs/${c.id}/cancel`)
  await waitStatus(c.id, ['canceled'])
  const f = await post('/api/jobs', { n: 300, steps: 3000, seed: 8, name: '1 s time limit', timeoutSeconds: 1 })
  await waitStatus(f.id, ['failed'])
  await post('/api/jobs', { n: 300, steps: 60, seed: 42, name: 'n=300 sweep', priority: 5 })
  const e = await post('/api/jobs', { n: 250, steps: 90, seed: 5, name: 'n=250 sweep' })
  await waitStatus(e.id, ['running'])
  await post('/api/jobs', { n: 500, steps: 200, seed: 9, name: 'queued: n=500' })
  // Let the running jobs get well along, so the progress bars, ETA and GF/s have something to show.
  for (let i = 0; i < 300; i++) {
    const job = await get(`/api/jobs/${e.id}`)
    if (job.status !== 'running' || job.step >= job.steps * 0.4) break
    await sleep(100)
  }
  await page.setViewportSize({ width, height: await page.evaluate(() => document.body.scrollHeight) })
  if (args.includes('--detail')) {
    await page.getByRole('button', { name: `Details of job ${b.id}` }).click()
    await page.waitForSelector('dialog[open]')
  }
  await page.screenshot({ path: out, fullPage: !args.includes('--detail') })
  console.log(`wrote ${out}`)
} finally {
  await browser?.close()
  server.kill('SIGKILL')
  await once(server, 'exit').catch(() => {})
  rmSync(dir, { recursive: true, force: true })
}
