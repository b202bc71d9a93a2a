// The "New job" form follows the job type: a selector of the types this server offers (GET /api/job-types) with
// their descriptions, and the type's fields generated from its params JSON Schema: integer/number inputs with
// min/max/default, text inputs, enum → select, boolean → checkbox. The API remains the judge of what is valid:
// values are sent as typed, so its message (shown inline under the form) names the field.

import { el } from './dom.js'

/** The types, by name, as last fetched. */
let types = new Map()

/** A field id that cannot collide with the static ones. */
const fieldId = (key) => `p-${key.replace(/[^a-zA-Z0-9_-]/g, '_')}`

/** One generated field for property `key` of a params schema. */
function fieldFor (key, prop, required) {
  const id = fieldId(key)
  const label = el('label', { for: id, text: prop.title ?? key })
  if (!required && prop.default === undefined) label.append(' ', el('span', { class: 'optional', text: '(optional)' }))
  const hintParts = []
  if (prop.description) hintParts.push(prop.description)
  if (prop.minimum !== undefined || prop.maximum !== undefined) hintParts.push(`${prop.minimum ?? '…'}–${prop.maximum ?? '…'}`)
  const hint = hintParts.length ? el('small', { id: `${id}-hint`, text: hintParts.join('; ') }) : null
  const common = { id, name: key, 'data-param': key, 'aria-describedby': hint ? `${id}-hint` : undefined }
  let input
  if (prop['x-matrix-id'] === true) {
    // One stored matrix: a picker of those stored now (GET /api/matrices), filled when the type is shown.
    input = el('select', { ...common, required, 'data-kind': 'number', 'data-matrix-picker': '' }, el('option', { value: '', text: 'loading the stored matrices…' }))
  } else if (prop.type === 'array' && prop.items?.['x-matrix-id'] === true) {
    // Several, in order (a chain product): ids separated by commas, with the stored ones listed in the hint.
    input = el('input', { ...common, type: 'text', required, autocomplete: 'off', placeholder: 'e.g. 1, 2, 1', 'data-kind': 'id-list', 'data-matrix-list': '' })
  } else if (Array.isArray(prop.enum)) {
    input = el('select', { ...common, 'data-kind': 'enum' }, ...prop.enum.map((v) => el('option', { value: String(v), text: String(v) })))
    if (prop.default !== undefined) input.value = String(prop.default)
  } else if (prop.type === 'boolean') {
    input = el('input', { ...common, type: 'checkbox', 'data-kind': 'boolean', checked: prop.default === true })
    return el('div', { class: 'field field-check' }, el('label', { for: id }, input, ' ', prop.title ?? key), hint)
  } else if (prop.type === 'integer' || prop.type === 'number') {
    input = el('input', {
      ...common,
      type: 'number',
      inputmode: prop.type === 'integer' ? 'numeric' : 'decimal',
      step: prop.type === 'integer' ? '1' : 'any',
      min: prop.minimum,
      max: prop.maximum,
      // A default is what the API fills in; an example is only a starting value for the form.
      value: prop.default ?? prop.examples?.[0],
      required,
      'data-kind': 'number'
    })
  } else {
    input = el('input', { ...common, type: 'text', maxlength: prop.maxLength, value: prop.default, required, autocomplete: 'off', 'data-kind': 'string' })
  }
  return el('div', { class: 'field' }, label, input, hint)
}

/** Replaces the generated fields with those of type `name`. */
function showType (form, name) {
  const type = types.get(name)
  const container = form.querySelector('#type-fields')
  const description = form.querySelector('#f-type-description')
  description.textContent = type ? type.description : ''
  const schema = type?.params ?? {}
  const required = new Set(schema.required ?? [])
  container.replaceChildren(...Object.entries(schema.properties ?? {}).map(([key, prop]) => fieldFor(key, prop, required.has(key))))
  if (container.querySelector('[data-matrix-picker], [data-matrix-list]')) fillMatrixPickers(container)
}

/** Fills the matrix pickers of the shown fields from the stored matrices (the newest 200). */
async function fillMatrixPickers (container) {
  let matrices = []
  try {
    const res = await fetch('/api/matrices?limit=200', { headers: { accept: 'application/json' } })
    if (res.ok) matrices = (await res.json()).matrices ?? []
  } catch {
    // Left empty: the picker says so.
  }
  const label = (m) => `${m.id}: ${m.name} (${m.rows}×${m.cols})`
  for (const select of container.querySelectorAll('[data-matrix-picker]')) {
    select.replaceChildren(
      el('option', { value: '', text: matrices.length ? 'choose a stored matrix' : 'no stored matrix yet: upload one under Matrices' }),
      ...matrices.map((m) => el('option', { value: String(m.id), text: label(m) })))
  }
  for (const input of container.querySelectorAll('[data-matrix-list]')) {
    const hint = container.querySelector(`#${input.id}-hint`) ?? input.parentElement.appendChild(el('small', { id: `${input.id}-hint` }))
    hint.textContent = matrices.length ? `stored: ${matrices.map(label).join(', ')}` : 'no stored matrix yet: upload them under Matrices'
  }
}

/** Fetches the job types and fills the selector; the form keeps working (as lyapunov) if this fails. */
export async function initJobForm (form) {
  const select = form.querySelector('#f-type')
  let list = []
  try {
    const res = await fetch('/api/job-types', { headers: { accept: 'application/json' } })
    if (res.ok) list = (await res.json()).types
  } catch {
    // No list: the selector stays empty and the message below says why.
  }
  types = new Map(list.filter((t) => !t.error).map((t) => [t.name, t]))
  select.replaceChildren(...list.map((t) => el('option', {
    value: t.name,
    disabled: Boolean(t.error),
    text: t.error ? `${t.name} (unavailable: ${t.error})` : `${t.title}${t.builtIn ? '' : ' (user type)'}`
  })))
  const first = types.has('lyapunov') ? 'lyapunov' : types.keys().next().value
  if (first) select.value = first
  select.addEventListener('change', () => showType(form, select.value))
  showType(form, select.value)
  if (list.length === 0) form.querySelector('#f-type-description').textContent = 'the job types could not be loaded; reload the page'
}

/** The submission as the API takes it: {type, params, name?, priority?}. Values go as typed. */
export function readJobForm (form) {
  const data = new FormData(form)
  const params = {}
  for (const input of form.querySelectorAll('#type-fields [data-param]')) {
    const key = input.dataset.param
    const kind = input.dataset.kind
    if (kind === 'boolean') {
      params[key] = input.checked
      continue
    }
    const raw = input.value
    if (raw.trim() === '') {
      // A required field left empty goes as null, so the API's message names it; an optional one is left out.
      if (input.required) params[key] = null
      continue
    }
    if (kind === 'number') {
      const value = Number(raw.trim())
      params[key] = Number.isFinite(value) ? value : raw
    } else if (kind === 'id-list') {
      // "1, 2, 1" → [1, 2, 1]; anything that is not a number goes as typed, so the API's message names it.
      params[key] = raw.split(/[\s,;]+/).filter(Boolean).map((part) => Number.isFinite(Number(part)) ? Number(part) : part)
    } else {
      params[key] = raw
    }
  }
  const body = { type: String(data.get('type') ?? ''), params }
  const priority = String(data.get('priority') ?? '').trim()
  if (priority !== '') body.priority = Number.isFinite(Number(priority)) ? Number(priority) : priority
  const name = String(data.get('name') ?? '')
  if (name.trim() !== '') body.name = name
  return body
}
