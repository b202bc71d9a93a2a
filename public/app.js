// nonstop dashboard: plain DOM, no framework. It talks to the REST API (/api/jobs) and listens to
// /api/events (Server-Sent Events). Everything from the server is written with textContent, never as HTML.
//
// Live updates: every `event: job` replaces that job's row. On every (re)connect the page refetches the
// jobs it shows, so nothing is lost while the stream was down, and jobs deleted meanwhile disappear.
// Deletes made through this server also arrive as `event: deleted`; this page removes a row itself after
// its own DELETE answered 204.
//
// Bar, ETA, GF/s and the chart follow the job's fractional `progress` (0..100), not whole steps: a job of 3 big
// steps moves continuously. The maths (durations, the ETA) lives in format.js, which the tests import.

import { duration, fieldOfApiMessage, fieldProblem, percent, ProgressTracker } from './format.js'

import { el } from './dom.js'
import { bulkCount, filterQuery, isoOfLocalInput, localInputValue, matchesFilter, parseFilter } from './filters.js'
import { initJobForm, readJobForm } from './form.js'

const PAGE_SIZE = 50
const TOKEN_KEY = 'nonstop.apiToken'
const STATUSES = ['pending', 'running', 'done', 'failed', 'canceled']
const FINAL = new Set(['done', 'failed', 'canceled'])

const $ = (selector) => document.querySelector(selector)

/** Jobs shown, by id. */
const jobs = new Map()
/** Table rows, by job id: the row and the parts that change. */
const rows = new Map()
/** Progress seen while this page watched, by job id (a ProgressTracker: samples for the chart, the ETA, the rate). */
const trackers = new Map()
/** How long a message that needs nothing from the user stays (ms); errors stay until the next action. */
const MESSAGE_MS = 5000
/** Cursor of the next (older) page; null when every job is loaded. */
let nextCursor = null
/** Id of the job in the detail dialog. */
let selectedId = null
/** The filter of the list, as in the page's query string. */
let filter = parseFilter(window.location.search)
/** Jobs per status under the filter's other conditions (GET /api/jobs/counts), and how many match it all. */
let counted = null
/** The history shown in the detail dialog: whose, of which version, when fetched. */
let timelineState = null

// ---- helpers -------------------------------------------------------------------------------------------

const svgEl = (tag, attrs = {}) => {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag)
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value))
  return node
}

const ms = (iso) => (iso ? Date.parse(iso) : null)

const fmt = (x, digits = 4) => (typeof x === 'number' && Number.isFinite(x) ? x.toPrecision(digits) : '—')
const dateTime = (iso) => (iso ? new Date(iso).toLocaleString() : '—')

// ---- API -----------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor (status, message) {
    super(message)
    this.status = status
  }
}

let tokenRequest = null

/** Shows the token form and resolves true once a token is saved, false if the user cancels. */
function askToken () {
  if (tokenRequest) return tokenRequest
  const panel = $('#token-panel')
  const form = $('#token-form')
  const input = $('#f-token')
  tokenRequest = new Promise((resolve) => {
    const finish = (saved) => {
      panel.hidden = true
      form.removeEventListener('submit', onSubmit)
      $('#token-cancel').removeEventListener('click', onCancel)
      tokenRequest = null
      resolve(saved)
    }
    const onSubmit = (event) => {
      event.preventDefault()
      const token = input.value.trim()
      if (!token) return
      localStorage.setItem(TOKEN_KEY, token)
      input.value = ''
      finish(true)
    }
    const onCancel = () => finish(false)
    form.addEventListener('submit', onSubmit)
    $('#token-cancel').addEventListener('click', onCancel)
    panel.hidden = false
    input.focus()
  })
  return tokenRequest
}

/** fetch for the JSON API: sends the stored token, asks for one on a 401 and retries once, throws ApiError. */
async function api (path, { body, method = body === undefined ? 'GET' : 'POST' } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { accept: 'application/json' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    const token = localStorage.getItem(TOKEN_KEY)
    if (token) headers.authorization = `Bearer ${token}`
    let res
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
    } catch {
      throw new ApiError(0, 'the server cannot be reached')
    }
    if (res.status === 401 && attempt === 0 && await askToken()) continue
    const text = await res.text()
    let data = null
    try {
      data = text ? JSON.parse(text) : null
    } catch {
      data = null
    }
    if (!res.ok) throw new ApiError(res.status, data?.message ?? `${res.status} ${res.statusText}`)
    return data
  }
}

// ---- state ---------------------------------------------------------------------------------------------

/** Oldest id loaded; jobs older than it belong to pages not loaded yet. */
function floorId () {
  let min = Infinity
  for (const id of jobs.keys()) if (id < min) min = id
  return min
}

/** Takes a job from the API or the stream; ignores states older than the one shown (by version, which follows commit order). */
function upsert (job, { fromList = false } = {}) {
  const old = jobs.get(job.id)
  if (old && old.version > job.version) return
  if (!matchesFilter(job, filter)) {
    // Out of the filter now (or never in it): off the list, but a dialog open on it keeps following it.
    if (selectedId === job.id) {
      jobs.set(job.id, job)
      renderDetail()
    }
    dropRow(job.id)
    scheduleCounts()
    return
  }
  if (!old && !fromList && nextCursor !== null && job.id < floorId()) return
  jobs.set(job.id, job)
  if (job.status === 'running') {
    let tracker = trackers.get(job.id)
    if (!tracker) trackers.set(job.id, (tracker = new ProgressTracker()))
    // The run's start is where progress was 0 only for a first attempt; a resumed one began at its checkpoint.
    tracker.add(ms(job.updatedAt), job.progress, job.attempts <= 1 ? ms(job.startedAt) : null)
  }
  renderRow(job)
  if (selectedId === job.id) renderDetail()
  scheduleCounts()
}

/** Takes a job's row off the list (and forgets the job, unless its dialog is open). */
function dropRow (id) {
  rows.get(id)?.tr.remove()
  rows.delete(id)
  if (selectedId !== id) {
    jobs.delete(id)
    trackers.delete(id)
  }
}

function removeJob (id) {
  jobs.delete(id)
  trackers.delete(id)
  rows.get(id)?.tr.remove()
  rows.delete(id)
  if (selectedId === id) {
    $('#detail').close()
  }
  scheduleCounts()
}

/** Refetches every job the page shows (at least the first page) and drops the ones gone meanwhile. */
async function refresh () {
  const limit = Math.min(500, Math.max(PAGE_SIZE, jobs.size))
  try {
    const query = filterQuery(filter)
    const page = await api(`/api/jobs?limit=${limit}${query ? `&${query}` : ''}`)
    const seen = new Set(page.jobs.map((j) => j.id))
    const oldest = page.nextCursor === null ? 0 : Math.min(...page.jobs.map((j) => j.id))
    for (const id of [...jobs.keys()]) if (id >= oldest && !seen.has(id) && rows.has(id)) removeJob(id)
    if (page.nextCursor === null || nextCursor === null || page.nextCursor < nextCursor) nextCursor = page.nextCursor
    for (const job of page.jobs) upsert(job, { fromList: true })
    if ($('#list-message').classList.contains('error')) showListMessage('')
  } catch (err) {
    showListMessage(`Cannot load jobs: ${err.message}`, true)
  }
  renderMore()
  loadCounts()
}

async function loadMore () {
  if (nextCursor === null) return
  const button = $('#more')
  button.disabled = true
  try {
    const query = filterQuery(filter)
    const page = await api(`/api/jobs?limit=${PAGE_SIZE}&cursor=${nextCursor}${query ? `&${query}` : ''}`)
    nextCursor = page.nextCursor
    for (const job of page.jobs) upsert(job, { fromList: true })
  } catch (err) {
    showListMessage(`Cannot load older jobs: ${err.message}`, true)
  } finally {
    button.disabled = false
    renderMore()
  }
}

// ---- rendering -----------------------------------------------------------------------------------------

const messageTimers = new Map()

/**
 * Shows a status line. A plain message clears itself after MESSAGE_MS; an error stays until the next action
 * (the next message on that line, or an edit of the form), so it cannot vanish before it is read.
 */
function showMessage (node, text, isError = false) {
  clearTimeout(messageTimers.get(node))
  node.textContent = text
  node.classList.toggle('error', isError)
  if (text && !isError) messageTimers.set(node, setTimeout(() => { node.textContent = '' }, MESSAGE_MS))
}

const showListMessage = (text, isError = false) => showMessage($('#list-message'), text, isError)

function renderMore () {
  $('#more').hidden = nextCursor === null
  $('#empty').hidden = rows.size > 0
  $('#empty').textContent = filterQuery(filter) ? 'No job matches this filter.' : 'No jobs yet. Start one above.'
}

// ---- filter, counts, bulk actions ----------------------------------------------------------------------

/** Counts from the server for the current filter: after a load, and at most once a second while jobs change. */
let countsTimer = null
function scheduleCounts () {
  renderMore()
  if (countsTimer) return
  countsTimer = setTimeout(() => {
    countsTimer = null
    loadCounts()
  }, 1000)
}

async function loadCounts () {
  const query = filterQuery(filter)
  try {
    const reply = await api(`/api/jobs/counts${query ? `?${query}` : ''}`)
    if (query !== filterQuery(filter)) return // the filter changed meanwhile
    counted = reply
  } catch {
    return // the next change or reconnect asks again
  }
  renderCounts()
}

function renderCounts () {
  if (!counted) return
  const { counts, total } = counted
  const visible = STATUSES.filter((s) => counts[s] > 0 && (!filter.status?.length || filter.status.includes(s)))
  $('#counts').textContent = visible.map((s) => `${counts[s]} ${s}`).join(' · ')
  for (const node of document.querySelectorAll('[data-count]')) node.textContent = `(${counts[node.dataset.count]})`
  $('#match-count').textContent = `${total} job${total === 1 ? '' : 's'} match${total === 1 ? 'es' : ''}${filterQuery(filter) ? ' this filter' : ''}`
  for (const button of document.querySelectorAll('[data-bulk]')) button.disabled = bulkCount(button.dataset.bulk, counts, filter) === 0
}

/** Shows the filter in the form. */
function renderFilter () {
  const form = $('#filters')
  for (const box of form.querySelectorAll('input[name="status"]')) box.checked = filter.status?.includes(box.value) ?? false
  const type = $('#q-type')
  if (filter.type && ![...type.options].some((o) => o.value === filter.type)) type.append(el('option', { value: filter.type, text: filter.type }))
  type.value = filter.type ?? ''
  if (document.activeElement !== $('#q-name')) $('#q-name').value = filter.name ?? ''
  $('#q-from').value = localInputValue(filter.createdFrom)
  $('#q-to').value = localInputValue(filter.createdTo)
}

/** The filter the form describes. */
function readFilter () {
  const form = $('#filters')
  const next = {}
  const status = [...form.querySelectorAll('input[name="status"]:checked')].map((box) => box.value)
  if (status.length) next.status = status
  if ($('#q-type').value) next.type = $('#q-type').value
  if ($('#q-name').value.trim()) next.name = $('#q-name').value.trim()
  const from = isoOfLocalInput($('#q-from').value)
  const to = isoOfLocalInput($('#q-to').value)
  if (from) next.createdFrom = from
  if (to) next.createdTo = to
  return next
}

/** Shows the jobs of `next` from scratch; `push` adds a history entry (the back button returns to the last one). */
function applyFilter (next, { push = true } = {}) {
  const query = filterQuery(next)
  if (query === filterQuery(filter) && push) return
  filter = next
  if (push) window.history.pushState(null, '', query ? `?${query}` : window.location.pathname)
  for (const id of [...rows.keys()]) dropRow(id)
  nextCursor = null
  counted = null
  renderFilter()
  refresh()
}

let nameTimer = null
function onFilterInput (event) {
  clearTimeout(nameTimer)
  // Typing in the name waits for a pause; every other control applies at once.
  if (event.target.name === 'name') nameTimer = setTimeout(() => applyFilter(readFilter()), 300)
  else applyFilter(readFilter())
}

async function loadTypes () {
  try {
    const { types } = await api('/api/job-types')
    const select = $('#q-type')
    for (const type of types) if (![...select.options].some((o) => o.value === type.name)) select.append(el('option', { value: type.name, text: type.name }))
    renderFilter()
  } catch {
    // The type list only helps; the filter works without it.
  }
}

const BULK_WORDS = {
  cancel: { verb: 'Cancel', what: 'pending or running', done: 'canceled or asked to stop' },
  retry: { verb: 'Retry', what: 'failed or canceled', done: 'retried' },
  delete: { verb: 'Delete', what: 'finished', done: 'deleted' }
}

/** Asks in a dialog of the page (never window.confirm); resolves true to go ahead. */
function confirmBulk (text, verb) {
  const dialog = $('#bulk-confirm')
  $('#bulk-confirm-text').textContent = text
  $('#bulk-confirm-ok').textContent = verb
  return new Promise((resolve) => {
    const finish = (ok) => {
      $('#bulk-confirm-ok').removeEventListener('click', onOk)
      dialog.removeEventListener('close', onClose)
      if (dialog.open) dialog.close()
      resolve(ok)
    }
    const onOk = () => finish(true)
    const onClose = () => finish(false)
    $('#bulk-confirm-ok').addEventListener('click', onOk)
    dialog.addEventListener('close', onClose)
    dialog.showModal()
    $('#bulk-confirm-cancel').focus()
  })
}

async function bulk (action, button) {
  showListMessage('')
  const words = BULK_WORDS[action]
  const sent = { ...filter }
  await loadCounts()
  const count = bulkCount(action, counted?.counts, sent)
  if (count === 0) {
    showListMessage(`No ${words.what} job matches${filterQuery(sent) ? ' this filter' : ''}.`)
    return
  }
  const scope = filterQuery(sent) ? 'matching this filter' : 'on this server'
  if (!await confirmBulk(`${words.verb} the ${count} ${words.what} job${count === 1 ? '' : 's'} ${scope}? This applies to every matching job, not only those on screen.`, `${words.verb} ${count} job${count === 1 ? '' : 's'}`)) return
  button.disabled = true
  showListMessage(`${words.verb}: working…`)
  try {
    const reply = await api('/api/jobs/bulk', { body: { action, filter: sent } })
    const skipped = reply.skippedTotal ? `; ${reply.skippedTotal} skipped (${reply.skipped[0].reason}${reply.skippedTotal > 1 ? ', …' : ''})` : ''
    showListMessage(`${reply.changed} of ${reply.matched} matching job${reply.matched === 1 ? '' : 's'} ${words.done}${skipped}.`)
  } catch (err) {
    showListMessage(`${words.verb} all matching: ${err.message}`, true)
  } finally {
    button.disabled = false
    refresh()
    loadThroughput()
  }
}

// ---- throughput ----------------------------------------------------------------------------------------

async function loadThroughput () {
  let t
  try {
    t = await api('/api/stats/throughput?minutes=60')
  } catch {
    return
  }
  $('#queue').textContent = `queue: ${t.pending} pending · ${t.running} running`
  const W = 600
  const H = 90
  const pad = { l: 28, r: 4, t: 6, b: 16 }
  const most = Math.max(1, ...t.minutes.map((m) => m.done + m.failed))
  const bw = (W - pad.l - pad.r) / t.minutes.length
  const y = (n) => H - pad.b - (n / most) * (H - pad.t - pad.b)
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'throughput-svg' })
  const total = t.minutes.reduce((sum, m) => ({ done: sum.done + m.done, failed: sum.failed + m.failed }), { done: 0, failed: 0 })
  const title = svgEl('title')
  title.textContent = `jobs finished per minute over the last hour: ${total.done} done, ${total.failed} failed; at most ${most} in a minute`
  svg.append(title)
  const text = (content, attrs) => {
    const node = svgEl('text', attrs)
    node.textContent = content
    return node
  }
  svg.append(svgEl('line', { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: 'axis' }))
  svg.append(text(String(most), { x: pad.l - 4, y: pad.t + 8, 'text-anchor': 'end' }))
  svg.append(text('−60 min', { x: pad.l, y: H - 3, 'text-anchor': 'start' }))
  svg.append(text('now', { x: W - pad.r, y: H - 3, 'text-anchor': 'end' }))
  t.minutes.forEach((m, i) => {
    const x = pad.l + i * bw + 0.5
    if (m.done) svg.append(svgEl('rect', { x, y: y(m.done), width: Math.max(1, bw - 1), height: H - pad.b - y(m.done), class: 'bar-done' }))
    if (m.failed) svg.append(svgEl('rect', { x, y: y(m.done + m.failed), width: Math.max(1, bw - 1), height: y(m.done) - y(m.done + m.failed), class: 'bar-failed' }))
  })
  $('#throughput-chart').replaceChildren(svg, el('p', { class: 'muted legend', text: `last hour: ${total.done} done, ${total.failed} failed (per minute, from the database)` }))
}

// ---- nodes ---------------------------------------------------------------------------------------------

/** A node silent for longer than this is shown as such (ms): it has stopped, or lost the database. */
const NODE_SILENT_MS = 60_000

async function loadNodes () {
  let list
  try {
    ({ nodes: list } = await api('/api/nodes'))
  } catch {
    return
  }
  const silent = list.filter((n) => n.heartbeatAgeMs > NODE_SILENT_MS).length
  const running = list.reduce((sum, n) => sum + n.running, 0)
  $('#nodes-summary').textContent = list.length === 0
    ? ''
    : `${list.length} ${list.length === 1 ? 'node' : 'nodes'} · ${running} running${silent ? ` · ${silent} silent` : ''}`
  $('#nodes-table tbody').replaceChildren(...list.map((n) => el('tr', { class: n.heartbeatAgeMs > NODE_SILENT_MS ? 'node-silent' : undefined },
    el('td', { class: 'name' }, n.nodeId, n.self ? el('span', { class: 'muted node-self', text: ' (this server)' }) : null),
    el('td', { class: 'node-host', 'data-label': 'host', text: n.host }),
    el('td', { class: 'num', 'data-label': 'pid', text: n.pid }),
    el('td', { 'data-label': 'started', text: dateTime(n.startedAt), title: n.startedAt }),
    el('td', { class: 'num', 'data-label': 'last heartbeat', text: `${duration(n.heartbeatAgeMs)} ago`, title: n.heartbeatAt }),
    el('td', { class: 'num', 'data-label': 'running jobs', text: n.running }))))
  $('#nodes-table').hidden = list.length === 0
  $('#nodes-empty').hidden = list.length > 0
}

function elapsedOf (job) {
  const started = ms(job.startedAt)
  if (!started) return null
  const end = FINAL.has(job.status) ? ms(job.finishedAt) ?? ms(job.updatedAt) : Date.now()
  return end - started
}

function etaOf (job) {
  if (job.status !== 'running') return null
  return trackers.get(job.id)?.eta(Date.now()) ?? null
}

function gflopsText (job) {
  if (job.status === 'done' && typeof job.result?.gflops === 'number') return job.result.gflops.toFixed(2)
  const perSecond = job.status === 'running' ? trackers.get(job.id)?.perSecond() : null
  // A step of the built-in job is one n×n product: 2n³ floating-point operations.
  if (perSecond && job.type === 'lyapunov' && typeof job.params?.n === 'number') {
    const stepsPerSecond = (perSecond / 100) * job.steps
    return `~${((2 * job.params.n ** 3 * stepsPerSecond) / 1e9).toFixed(2)}`
  }
  return '—'
}

/** Progress in %, 100 once done (a finished job's bar is full whatever its last beat said). */
const progressOf = (job) => (job.status === 'done' ? 100 : job.progress)

function statusText (job) {
  if (job.status === 'running' && job.cancelRequested) return 'canceling'
  return job.status
}

function badge (job) {
  return el('span', { class: `badge badge-${job.status}`, text: statusText(job) })
}

/** Cancel / Retry / Delete buttons for a job; `where` names them for screen readers. */
function actionButtons (job) {
  const label = job.name ? `job ${job.id} (${job.name})` : `job ${job.id}`
  const make = (action, text) => {
    const button = el('button', { type: 'button', class: `action action-${action}`, 'data-action': action, 'aria-label': `${text} ${label}`, text })
    button.addEventListener('click', () => act(action, job.id, button))
    return button
  }
  return [make('cancel', 'Cancel'), make('retry', 'Retry'), make('delete', 'Delete')]
}

function updateActions (buttons, job) {
  for (const button of buttons) {
    const action = button.dataset.action
    button.hidden = action === 'cancel'
      ? !(job.status === 'pending' || job.status === 'running') || job.cancelRequested
      : action === 'retry'
        ? !(job.status === 'failed' || job.status === 'canceled')
        : !FINAL.has(job.status)
  }
}

function renderRow (job) {
  let row = rows.get(job.id)
  if (!row) {
    const cell = (label, ...children) => el('td', { 'data-label': label }, ...children)
    const open = el('button', { type: 'button', class: 'link' })
    open.addEventListener('click', () => openDetail(job.id))
    const bar = el('progress', { max: 100, value: 0 })
    const stepText = el('span', { class: 'step' })
    const buttons = actionButtons(job)
    row = {
      tr: el('tr', { 'data-id': job.id }),
      open,
      status: el('td', { 'data-label': 'status', class: 'status' }),
      bar,
      stepText,
      elapsed: el('td', { 'data-label': 'elapsed', class: 'num' }),
      eta: el('td', { 'data-label': 'ETA', class: 'num' }),
      gflops: el('td', { 'data-label': 'GF/s', class: 'num' }),
      attempts: el('td', { 'data-label': 'attempts', class: 'num' }),
      buttons
    }
    row.tr.append(
      cell('id', el('span', { class: 'id', text: `#${job.id}` })),
      el('td', { 'data-label': 'name', class: 'name' }, open),
      row.status,
      el('td', { 'data-label': 'progress', class: 'progress' }, bar, stepText),
      row.elapsed, row.eta, row.gflops, row.attempts,
      el('td', { class: 'row-actions' }, ...buttons)
    )
    rows.set(job.id, row)
    // Newest first: before the first row with a smaller id.
    const tbody = $('#jobs tbody')
    let before = null
    for (const tr of tbody.children) {
      if (Number(tr.dataset.id) < job.id) { before = tr; break }
    }
    tbody.insertBefore(row.tr, before)
  }
  row.tr.dataset.status = job.status
  row.open.textContent = job.name || `job ${job.id}`
  row.open.classList.toggle('unnamed', !job.name)
  row.open.setAttribute('aria-label', `Details of job ${job.id}`)
  row.status.replaceChildren(badge(job))
  row.bar.value = progressOf(job)
  row.bar.setAttribute('aria-label', `job ${job.id} progress`)
  row.stepText.textContent = `${percent(progressOf(job))} · step ${job.step} of ${job.steps}`
  row.attempts.textContent = String(job.attempts)
  updateActions(row.buttons, job)
  renderTimes(job, row)
}

function renderTimes (job, row = rows.get(job.id)) {
  if (!row) return
  row.elapsed.textContent = duration(elapsedOf(job))
  const eta = etaOf(job)
  row.eta.textContent = eta === null ? '—' : duration(eta)
  row.gflops.textContent = gflopsText(job)
}

// ---- actions -------------------------------------------------------------------------------------------

async function act (action, id, button) {
  button.disabled = true
  showListMessage('')
  try {
    if (action === 'delete') {
      await api(`/api/jobs/${id}`, { method: 'DELETE' })
      removeJob(id)
      showListMessage(`Job ${id} deleted.`)
    } else {
      const job = await api(`/api/jobs/${id}/${action}`, { method: 'POST' })
      upsert(job, { fromList: true })
      showListMessage(action === 'retry' ? `Job ${id} retried as job ${job.id}.` : `Cancel of job ${id} requested.`)
    }
  } catch (err) {
    showListMessage(`Job ${id}: ${err.message}`, true)
    if (err.status === 404) removeJob(id)
  } finally {
    button.disabled = false
  }
}

/** The label of a form control in plain words, without "(optional)". */
function labelOf (input) {
  const label = input.labels?.[0]
  if (!label) return input.name
  const own = [...label.childNodes].filter((node) => node.nodeType === 3).map((node) => node.textContent).join('')
  return own.trim() || input.name
}

/** The rules of a control, read from its own attributes (min, max, required, maxlength). */
function problemOf (input) {
  const bound = (name) => (input.hasAttribute(name) && input.getAttribute(name) !== '' ? Number(input.getAttribute(name)) : null)
  const isNumber = input.type === 'number'
  return fieldProblem({
    label: labelOf(input),
    raw: input.value,
    badInput: isNumber && input.validity.badInput,
    required: input.required,
    kind: isNumber ? (input.step === 'any' ? 'number' : 'integer') : 'text',
    min: isNumber ? bound('min') : null,
    max: isNumber ? bound('max') : null,
    maxLength: input.maxLength >= 0 ? input.maxLength : null
  })
}

/** Marks a control invalid with its message under it, or clears that. */
function setFieldError (input, text) {
  const field = input.closest('.field') ?? input.parentElement
  let note = field.querySelector('.field-error')
  if (!text) {
    input.removeAttribute('aria-invalid')
    input.removeAttribute('aria-errormessage')
    note?.remove()
    return
  }
  if (!note) {
    note = el('small', { class: 'field-error', id: `${input.id || input.name}-error` })
    field.append(note)
  }
  note.textContent = text
  input.setAttribute('aria-invalid', 'true')
  input.setAttribute('aria-errormessage', note.id)
}

/** Checks every control of the form at once; returns the messages (empty when all is fine). */
function checkForm (form) {
  const problems = []
  for (const input of form.querySelectorAll('input[name]')) {
    const problem = problemOf(input)
    setFieldError(input, problem)
    if (problem) problems.push({ input, problem })
  }
  return problems
}

async function submitJob (event) {
  event.preventDefault()
  const form = event.target
  const message = $('#form-message')
  const problems = checkForm(form)
  if (problems.length) {
    showMessage(message, problems.length === 1 ? problems[0].problem : `${problems.length} fields to fix: ${problems.map((p) => p.problem).join('; ')}`, true)
    problems[0].input.focus()
    return
  }
  const button = form.querySelector('button[type=submit]')
  button.disabled = true
  showMessage(message, 'Submitting…')
  try {
    const job = await api('/api/jobs', { body: readJobForm(form) })
    upsert(job, { fromList: true })
    showMessage(message, `Job ${job.id} submitted.`)
  } catch (err) {
    // A refusal about one field (a page older than the server's limits) marks that field, in the API's words.
    const name = fieldOfApiMessage(err.message)
    const input = name ? form.querySelector(`input[name="${window.CSS.escape(name)}"]`) : null
    if (input) setFieldError(input, `${labelOf(input)}: ${err.message.replace(/^body\/(?:params\/)?[A-Za-z0-9_]+ /, '').replace(/^body /, '')}`)
    showMessage(message, err.message, true)
  } finally {
    button.disabled = false
  }
}

/** An edit clears that field's mark, and the form's error line: the user is acting on it. */
function onFormInput (event) {
  const input = event.target
  if (input.tagName === 'INPUT' && input.hasAttribute('aria-invalid')) setFieldError(input, null)
  const message = $('#form-message')
  if (message.classList.contains('error')) showMessage(message, '')
}

// ---- detail dialog -------------------------------------------------------------------------------------

let detailButtons = null
let opener = null

function openDetail (id) {
  selectedId = id
  opener = document.activeElement
  renderDetail()
  const dialog = $('#detail')
  if (!dialog.open) dialog.showModal()
}

function section (title, pairs, className = '') {
  const dl = el('dl')
  for (const [key, value] of pairs) dl.append(el('dt', { text: key }), el('dd', { text: value }))
  return el('section', { class: `detail-section ${className}`.trim() }, el('h3', { text: title }), dl)
}

/** The chart's points: what this page saw, and for a finished job its end at 100 %. */
function chartPoints (job) {
  const points = [...(trackers.get(job.id)?.samples ?? [])]
  const finished = ms(job.finishedAt)
  if (job.status === 'done' && points.length && finished !== null && points[points.length - 1].progress < 100) {
    points.push({ t: Math.max(finished, points[points.length - 1].t), progress: 100 })
  }
  return points
}

function chart (job) {
  const list = chartPoints(job)
  const wrap = el('section', { class: 'detail-section chart' }, el('h3', { text: 'Progress while watched' }))
  if (list.length < 2) {
    wrap.append(el('p', { class: 'muted', text: job.status === 'running' ? 'Collecting progress…' : 'Progress is charted while this page watches a running job.' }))
    return wrap
  }
  const W = 320
  const H = 120
  const pad = { l: 36, r: 8, t: 8, b: 20 }
  const t0 = list[0].t
  const span = Math.max(1, list[list.length - 1].t - t0)
  const x = (t) => pad.l + ((t - t0) / span) * (W - pad.l - pad.r)
  const y = (progress) => H - pad.b - (Math.min(100, Math.max(0, progress)) / 100) * (H - pad.t - pad.b)
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'chart-svg' })
  const title = svgEl('title')
  title.textContent = `progress over time: ${percent(list[0].progress)} to ${percent(list[list.length - 1].progress)} in ${duration(span)}`
  svg.append(title)
  svg.append(svgEl('line', { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: 'axis' }))
  svg.append(svgEl('line', { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, class: 'axis' }))
  svg.append(svgEl('line', { x1: pad.l, y1: y(100), x2: W - pad.r, y2: y(100), class: 'goal' }))
  const label = (text, attrs) => {
    const node = svgEl('text', attrs)
    node.textContent = text
    return node
  }
  svg.append(label('100 %', { x: pad.l - 4, y: y(100) + 4, 'text-anchor': 'end' }))
  svg.append(label('0', { x: pad.l - 4, y: H - pad.b + 4, 'text-anchor': 'end' }))
  svg.append(label('0 s', { x: pad.l, y: H - 4, 'text-anchor': 'start' }))
  svg.append(label(duration(span), { x: W - pad.r, y: H - 4, 'text-anchor': 'end' }))
  svg.append(svgEl('polyline', { points: list.map((p) => `${x(p.t).toFixed(1)},${y(p.progress).toFixed(1)}`).join(' '), class: 'line' }))
  wrap.append(svg)
  return wrap
}

/** The job's history (GET /api/jobs/:id/events), fetched on opening and again when the job has changed (at most
 *  once a second). */
function timeline (job) {
  const wrap = el('section', { class: 'detail-section history' }, el('h3', { text: 'History' }))
  const fresh = timelineState && timelineState.id === job.id
  if (!fresh || (timelineState.version !== job.version && !timelineState.loading && Date.now() - timelineState.at > 1000)) loadHistory(job)
  if (!fresh || !timelineState.events) {
    wrap.append(el('p', { class: 'muted', text: timelineState?.error ?? 'Loading…' }))
    return wrap
  }
  const list = el('ol', { class: 'timeline' })
  for (const event of timelineState.events) {
    list.append(el('li', { 'data-kind': event.kind },
      el('time', { datetime: event.at, text: new Date(event.at).toLocaleTimeString() }), ' ', el('span', { text: event.message })))
  }
  wrap.append(list)
  return wrap
}

/** The job's log lines (GET /api/jobs/:id/log, from LOG_FILE), read only when asked for. */
let logLines = null
function logSection (job) {
  const wrap = el('section', { class: 'detail-section history log' }, el('h3', { text: 'Log lines' }))
  if (logLines?.id !== job.id) {
    wrap.append(el('button', { type: 'button', class: 'show-log', text: 'Show the log lines of this job', onclick: () => loadLog(job.id) }))
    return wrap
  }
  if (logLines.text) {
    wrap.append(el('p', { class: 'muted', text: logLines.text }))
    return wrap
  }
  wrap.append(el('pre', { class: 'log-lines', text: logLines.lines.map((l) => `${new Date(l.time).toLocaleTimeString()} ${l.level.padEnd(5)} ${l.msg} ${l.fields}`).join('\n') }))
  return wrap
}

async function loadLog (id) {
  logLines = { id, text: 'Loading…' }
  const replace = () => {
    const section = $('#detail-body .detail-section.log')
    const job = jobs.get(id)
    if (section && job && selectedId === id) section.replaceWith(logSection(job))
  }
  replace()
  try {
    const reply = await api(`/api/jobs/${id}/log`)
    logLines = !reply.logFile
      ? { id, text: 'The server logs to stdout (LOG_FILE is not set), so its lines cannot be read back here; the history above is the record.' }
      : reply.lines.length ? { id, lines: reply.lines } : { id, text: 'No line of this job in the last MiB of the log file.' }
  } catch (err) {
    logLines = { id, text: `Cannot read the log: ${err.message}` }
  }
  replace()
}

async function loadHistory (job) {
  const mine = { id: job.id, version: job.version, at: Date.now(), loading: true, events: timelineState?.id === job.id ? timelineState.events : null }
  timelineState = mine
  try {
    mine.events = (await api(`/api/jobs/${job.id}/events`)).events
  } catch (err) {
    mine.error = `Cannot load the history: ${err.message}`
  }
  mine.loading = false
  // Only the history is redrawn: the rest of the dialog did not change.
  const section = $('#detail-body .detail-section.history')
  if (timelineState === mine && selectedId === job.id && section) section.replaceWith(timeline(jobs.get(job.id) ?? job))
}

function renderDetail () {
  const job = jobs.get(selectedId)
  if (!job) return
  const dialog = $('#detail')
  $('#detail-title').replaceChildren(`Job #${job.id} `, badge(job))
  const body = $('#detail-body')
  const parts = []
  parts.push(section('Job', [
    ['name', job.name ?? '—'],
    ['type', job.type],
    ['progress', `${percent(progressOf(job))} (step ${job.step} of ${job.steps})`],
    ['attempts', String(job.attempts)],
    ['worker pid', job.pid === null ? '—' : String(job.pid)],
    ...(job.retryOf ? [['retry of', `job ${job.retryOf}`]] : [])
  ]))
  parts.push(section('Parameters', [
    ...Object.entries(job.params).map(([key, value]) => [key, String(value)]),
    ['priority', String(job.priority)],
    ['timeout', job.timeoutSeconds === null ? 'none' : `${job.timeoutSeconds} s`]
  ]))
  if (job.result && job.type !== 'lyapunov') {
    // Any other type: its result fields as they are, and a result matrix with its downloads.
    const r = job.result
    parts.push(section('Result', Object.entries(r).map(([key, value]) => [key,
      key === 'elapsedMs' ? duration(value) : typeof value === 'number' ? fmt(value, 8) : typeof value === 'object' ? JSON.stringify(value) : String(value)])))
    if (Number.isSafeInteger(r.matrix)) {
      const links = ['json', 'csv', 'mtx', 'npy'].map((format) =>
        el('a', { href: `/api/matrices/${r.matrix}/data?format=${format}`, download: '', text: format }))
      parts.push(el('section', { class: 'detail-section result-matrix' }, el('h3', { text: `Result matrix ${r.matrix}` }),
        el('p', {}, 'download: ', ...links.flatMap((a, i) => (i ? [' · ', a] : [a])))))
    }
  } else if (job.result) {
    const r = job.result
    const relErr = typeof r.lyapunov === 'number' && typeof r.theory === 'number' && r.theory !== 0
      ? `${(Math.abs(r.lyapunov - r.theory) / Math.abs(r.theory) * 100).toPrecision(3)} %`
      : '—'
    parts.push(section('Result', [
      ['lyapunov', fmt(r.lyapunov, 8)],
      ['theory', fmt(r.theory, 8)],
      ['relative error', relErr],
      ['trace', fmt(r.trace, 8)],
      ['compute time', duration(r.elapsedMs)],
      ['GF/s', typeof r.gflops === 'number' ? r.gflops.toFixed(3) : '—']
    ]))
  }
  if (job.error) {
    parts.push(el('section', { class: 'detail-section' }, el('h3', { text: job.status === 'failed' ? 'Error' : 'Last error' }), el('pre', { class: 'error-text', text: job.error })))
  }
  parts.push(section('Timings', [
    ['created', dateTime(job.createdAt)],
    ['started', dateTime(job.startedAt)],
    ['finished', dateTime(job.finishedAt)],
    ['elapsed', duration(elapsedOf(job))],
    ...(job.status === 'running' ? [['ETA', duration(etaOf(job))], ['last heartbeat', dateTime(job.heartbeatAt)]] : [])
  ], 'timings'))
  parts.push(chart(job))
  parts.push(timeline(job))
  parts.push(logSection(job))
  body.replaceChildren(...parts)

  if (!detailButtons) {
    detailButtons = el('div', { class: 'dialog-actions' })
    dialog.append(detailButtons)
  }
  if (detailButtons.dataset.id !== String(job.id)) {
    detailButtons.dataset.id = String(job.id)
    detailButtons.replaceChildren(...actionButtons(job))
  }
  updateActions([...detailButtons.children], job)
}

// ---- live stream ---------------------------------------------------------------------------------------

function setLive (state, text) {
  const node = $('#live')
  node.dataset.state = state
  node.textContent = text
}

function connect () {
  const source = new EventSource('/api/events')
  source.addEventListener('open', () => {
    setLive('live', 'live')
    refresh()
  })
  source.addEventListener('job', (event) => upsert(JSON.parse(event.data)))
  source.addEventListener('deleted', (event) => removeJob(JSON.parse(event.data).id))
  source.addEventListener('reset', () => refresh())
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. the server answered 503 while restarting): try again ourselves.
      setLive('down', 'offline, retrying…')
      setTimeout(connect, 2000)
    } else {
      setLive('down', 'reconnecting…')
    }
  })
}

// ---- start ---------------------------------------------------------------------------------------------

$('#submit').addEventListener('submit', submitJob)
$('#submit').addEventListener('input', onFormInput)
initJobForm($('#submit'))
$('#more').addEventListener('click', loadMore)
$('#filters').addEventListener('input', onFilterInput)
$('#filters').addEventListener('submit', (event) => event.preventDefault())
$('#filter-clear').addEventListener('click', () => applyFilter({}))
for (const button of document.querySelectorAll('[data-bulk]')) button.addEventListener('click', () => bulk(button.dataset.bulk, button))
window.addEventListener('popstate', () => applyFilter(parseFilter(window.location.search), { push: false }))
renderFilter()
loadTypes()
loadThroughput()
setInterval(loadThroughput, 10_000)
loadNodes()
setInterval(loadNodes, 10_000)
$('#detail-close').addEventListener('click', () => $('#detail').close())
$('#detail').addEventListener('close', () => {
  if (selectedId !== null && !rows.has(selectedId)) jobs.delete(selectedId)
  selectedId = null
  logLines = null
  timelineState = null
  if (opener && document.contains(opener)) opener.focus()
})
// A click on the backdrop closes the dialog.
$('#detail').addEventListener('click', (event) => {
  const box = event.currentTarget.getBoundingClientRect()
  const inside = event.clientX >= box.left && event.clientX <= box.right && event.clientY >= box.top && event.clientY <= box.bottom
  if (event.target === event.currentTarget && !inside) event.currentTarget.close()
})
setInterval(() => {
  for (const job of jobs.values()) if (job.status === 'running') renderTimes(job)
  if (selectedId !== null && jobs.get(selectedId)?.status === 'running') renderDetail()
}, 1000)

connect()
