// Matrices panel: upload (file picker or drag and drop), list, downloads, preview of the top-left corner, delete.
// Plain DOM, no framework; every value from the server goes in through textContent, never as HTML.

import { el } from './dom.js'

const TOKEN_KEY = 'nonstop.apiToken'
const FORMATS = ['json', 'csv', 'mtx', 'npy']
/** File name extension → upload format. */
const BY_EXTENSION = { json: 'json', csv: 'csv', txt: 'csv', mtx: 'mtx', mm: 'mtx', npy: 'npy' }

const panel = document.getElementById('matrices-panel')

function bytes (n) {
  if (n < 1024) return `${n} B`
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 ** 2).toFixed(1)} MiB`
}

function authHeaders () {
  const token = localStorage.getItem(TOKEN_KEY)
  return token ? { authorization: `Bearer ${token}` } : {}
}

/** The server's error message, or the status line. */
async function failure (res) {
  try {
    const body = await res.json()
    if (res.status === 401) return `${body.message} (save the API token when the jobs panel asks for it)`
    return body.message
  } catch {
    return `${res.status} ${res.statusText}`
  }
}

if (panel) {
  const message = el('p', { class: 'message', role: 'status', 'aria-live': 'polite' })
  const input = el('input', { type: 'file', id: 'matrix-file', accept: '.json,.csv,.txt,.mtx,.mm,.npy', class: 'visually-hidden' })
  const drop = el('label', { for: 'matrix-file', class: 'matrix-drop', tabindex: '0' },
    el('strong', {}, 'Upload a matrix'), ' — drop a .csv, .json, .mtx or .npy file here, or click to choose one')
  const tbody = el('tbody')
  const empty = el('p', { class: 'empty' }, 'No matrices yet. Upload one to multiply it with a matmul or matpow job.')
  const preview = el('div', { class: 'matrix-preview', hidden: '' })
  const table = el('div', { class: 'table-wrap' }, el('table', { id: 'matrices' },
    el('caption', { class: 'visually-hidden' }, 'Stored matrices, newest first'),
    el('thead', {}, el('tr', {}, ...['id', 'name', 'shape', 'size', 'created', 'sha256', 'download', ''].map((h) => el('th', { scope: 'col' }, h)))),
    tbody))
  panel.append(el('div', { class: 'section-head' }, el('h2', { id: 'matrices-title' }, 'Matrices')), drop, input, message, table, empty, preview)

  const say = (text, error = false) => {
    message.textContent = text
    message.classList.toggle('error', error)
  }

  async function upload (file) {
    const extension = file.name.split('.').pop().toLowerCase()
    const format = BY_EXTENSION[extension]
    if (!format) return say(`${file.name}: cannot tell the format from the extension; use .csv, .json, .mtx or .npy`, true)
    say(`Uploading ${file.name} (${bytes(file.size)})…`)
    const query = new URLSearchParams({ name: file.name.slice(0, 200), format })
    const res = await fetch(`/api/matrices?${query}`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', ...authHeaders() }, body: file })
    if (res.status !== 201) return say(`${file.name}: ${await failure(res)}`, true)
    const meta = await res.json()
    say(`Stored ${meta.name} as matrix ${meta.id} (${meta.rows}×${meta.cols}).`)
    await refresh()
  }

  async function remove (meta) {
    const res = await fetch(`/api/matrices/${meta.id}`, { method: 'DELETE', headers: authHeaders() })
    if (res.status !== 204) return say(`Matrix ${meta.id}: ${await failure(res)}`, true)
    say(`Deleted matrix ${meta.id}.`)
    preview.hidden = true
    await refresh()
  }

  async function showPreview (meta) {
    const res = await fetch(`/api/matrices/${meta.id}/preview?rows=8&cols=8`)
    if (!res.ok) return say(`Matrix ${meta.id}: ${await failure(res)}`, true)
    const corner = await res.json()
    const shown = `${corner.data.length}×${corner.data[0].length}`
    preview.replaceChildren(
      el('h3', {}, `${meta.name} (matrix ${meta.id}, ${meta.rows}×${meta.cols}): top-left ${shown}`),
      el('div', { class: 'table-wrap' }, el('table', { class: 'matrix-corner' }, el('tbody', {},
        ...corner.data.map((row) => el('tr', {}, ...row.map((x) => el('td', {}, String(x)))))))))
    preview.hidden = false
  }

  function row (meta) {
    const downloads = el('span', { class: 'matrix-downloads' },
      ...FORMATS.map((f) => el('a', { href: `/api/matrices/${meta.id}/data?format=${f}`, download: '' }, f)))
    const created = new Date(meta.createdAt)
    return el('tr', { 'data-id': String(meta.id) },
      el('td', {}, String(meta.id)),
      el('td', {}, el('button', { type: 'button', class: 'link', title: 'preview the top-left corner', onclick: () => showPreview(meta) }, meta.name),
        meta.jobId === null ? '' : el('small', { class: 'matrix-owner' }, ` result of job ${meta.jobId}`)),
      el('td', {}, `${meta.rows}×${meta.cols}`),
      el('td', {}, bytes(meta.bytes)),
      el('td', { title: created.toISOString() }, created.toLocaleString()),
      el('td', { title: meta.sha256 }, el('code', {}, meta.sha256.slice(0, 12))),
      el('td', {}, downloads),
      el('td', {}, el('button', { type: 'button', class: 'action-delete', onclick: () => remove(meta), 'aria-label': `delete matrix ${meta.id}` }, 'delete')))
  }

  async function refresh () {
    try {
      const res = await fetch('/api/matrices?limit=100')
      if (!res.ok) return say(await failure(res), true)
      const page = await res.json()
      tbody.replaceChildren(...page.matrices.map(row))
      empty.hidden = page.matrices.length > 0
    } catch (err) {
      say(`Cannot list matrices: ${err.message}`, true)
    }
  }

  input.addEventListener('change', () => {
    if (input.files.length > 0) upload(input.files[0])
    input.value = ''
  })
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click() } })
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add('dragging') })
  }
  for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('dragging'))
  drop.addEventListener('drop', (e) => {
    e.preventDefault()
    const file = e.dataTransfer?.files?.[0]
    if (file) upload(file)
  })

  refresh()
  // Result matrices appear when jobs finish: refresh now and then while the page is visible.
  setInterval(() => { if (document.visibilityState === 'visible') refresh() }, 15000)
  window.addEventListener('focus', refresh)
}
