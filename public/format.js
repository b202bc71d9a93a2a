// Pure helpers of the dashboard: no DOM, no clock, no network. The page imports them, and so do the tap tests
// (test/browser/format.test.ts), so the maths of durations, ETAs and form rules is checked without a browser.

/**
 * A duration for people: "4.2 s", "42 s", "2 m 00 s", "1 h 05 m". Rounded to the shown unit *before* it is split,
 * so 119.6 s is "2 m 00 s", never "1 m 60 s". Seconds and minutes under a larger unit are two digits wide so a
 * column of durations does not jitter. '—' for no value.
 * @param {number | null | undefined} millis
 */
export function duration (millis) {
  if (millis === null || millis === undefined || !Number.isFinite(millis)) return '—'
  const ms = Math.max(0, millis)
  const tenths = Math.round(ms / 100)
  if (tenths < 100) return `${(tenths / 10).toFixed(1)} s`
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, '0')} s`
  const m = Math.round(ms / 60_000)
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} m`
}

/** A progress percentage (0..100) with one decimal: "17.7 %"; '—' for no value. */
export function percent (progress) {
  if (typeof progress !== 'number' || !Number.isFinite(progress)) return '—'
  return `${Math.min(100, Math.max(0, progress)).toFixed(1)} %`
}

/**
 * Follows one running job's progress and estimates when it will finish.
 *
 * Samples are (t = when the worker wrote it, progress 0..100). The rate is progress over run time: the slope of a
 * least-squares line through every sample of this attempt, or, with a single sample, progress over the time since
 * the attempt began at 0 % (`start`). A line through all samples averages out the worker's rounding (0.01 %, which
 * is 0.36 s of a one-hour job) and the irregular beats that made a two-point rate jitter. Each sample gives a
 * predicted finish time, and the ETA shown is an exponential average of those predictions minus now: at a steady
 * pace every prediction is the same instant, so the ETA only counts down; a slowdown moves it gradually, and
 * it moves the ETA up only past a small margin (1 s or 3 % of the time left), so noise never makes it tick up.
 */
/** Progress (in %) a fit must span before it gives an ETA: 50 times the worker's rounding of 0.01 %. */
const MIN_COVERED = 0.5
/** A predicted finish moves later only by more than this (ms), or … */
const LATER_MIN_MS = 1000
/** … this share of the time left, whichever is more. */
const LATER_FRACTION = 0.03

export class ProgressTracker {
  /**
   * @param {{ smoothing?: number, maxSamples?: number }} [options]
   *   smoothing: weight of the newest prediction (0..1]; maxSamples: samples kept for the chart (oldest dropped).
   */
  constructor ({ smoothing = 0.3, maxSamples = 2000 } = {}) {
    this.smoothing = smoothing
    this.maxSamples = maxSamples
    /** @type {{ t: number, progress: number }[]} Samples of this attempt, oldest first (for the chart). */
    this.samples = []
    /** Smoothed predicted finish time (epoch ms), or null before the first estimate. */
    this.finishAt = null
    /** Progress per ms at the last estimate, or null. */
    this.rate = null
    this.#reset()
  }

  // Running sums of the least-squares fit, over (t - t0) in seconds so they stay small.
  #t0 = 0
  #n = 0
  #sx = 0
  #sy = 0
  #sxx = 0
  #sxy = 0
  #last = null
  #first = 0
  #smoothed = null

  #reset () {
    this.samples = []
    this.finishAt = null
    this.rate = null
    this.#n = this.#sx = this.#sy = this.#sxx = this.#sxy = 0
    this.#last = null
    this.#smoothed = null
  }

  /**
   * Adds what the worker wrote. A sample older than the newest, or with less progress (a resumed attempt that
   * restarts from an older checkpoint), starts the estimate afresh.
   * @param {number} t epoch ms the worker wrote it
   * @param {number} progress 0..100
   * @param {number | null} [start] epoch ms this attempt started at 0 %, if known (used while there is one sample)
   */
  add (t, progress, start = null) {
    if (!Number.isFinite(t) || !Number.isFinite(progress)) return
    const last = this.#last
    if (last && (t < last.t || progress < last.progress)) this.#reset()
    else if (last && t === last.t) return
    this.#last = { t, progress }
    this.samples.push({ t, progress })
    if (this.samples.length > this.maxSamples) this.samples.splice(0, this.samples.length - this.maxSamples)
    if (this.#n === 0) {
      this.#t0 = t
      this.#first = progress
    }
    const x = (t - this.#t0) / 1000
    this.#n++
    this.#sx += x
    this.#sy += progress
    this.#sxx += x * x
    this.#sxy += x * progress

    // A beat without progress (a job type that reports whole steps only) says nothing new while the job is not
    // yet overdue: keep the prediction rather than make the ETA climb until the next step.
    if (last && progress === last.progress && this.finishAt !== null && t < this.finishAt) return
    const rate = this.#rate(t, progress, start)
    if (rate === null || !(rate > 0)) return
    // Too little progress seen to tell the rounding from the pace: no estimate yet rather than a wild one.
    const covered = this.#n === 1 ? progress : progress - this.#first
    if (covered < MIN_COVERED) return
    this.rate = rate
    const predicted = t + (100 - progress) / rate
    this.#smoothed = this.#smoothed === null ? predicted : this.#smoothed + this.smoothing * (predicted - this.#smoothed)
    // Shown: earlier finishes at once; a later one only past a margin, so noise in the fit never makes the ETA
    // tick up while the pace is steady, and a real slowdown still shows.
    const margin = Math.max(LATER_MIN_MS, LATER_FRACTION * (this.#smoothed - t))
    if (this.finishAt === null || this.#smoothed < this.finishAt || this.#smoothed > this.finishAt + margin) this.finishAt = this.#smoothed
  }

  /** Milliseconds left at `now`, or null while unknown. Never below 0. */
  eta (now) {
    if (this.finishAt === null) return null
    return Math.max(0, this.finishAt - now)
  }

  /** Progress per second (0..100 scale) at the last estimate, or null. */
  perSecond () {
    return this.rate === null ? null : this.rate * 1000
  }

  #rate (t, progress, start) {
    const n = this.#n
    const spread = n * this.#sxx - this.#sx * this.#sx
    if (n >= 2 && spread > 1e-9) {
      const slope = (n * this.#sxy - this.#sx * this.#sy) / spread
      if (slope > 0) return slope / 1000
    }
    if (n === 1 && start !== null && Number.isFinite(start) && t > start && progress > 0) return progress / (t - start)
    return null
  }
}

/**
 * Checks one form field against its rules and says what it needs in plain words, or returns null when it is fine.
 * `raw` is what was typed; `badInput` is true when the browser could not read a number from it.
 * @param {{ label: string, raw: string, badInput?: boolean, required?: boolean, kind: 'integer' | 'number' | 'text',
 *   min?: number | null, max?: number | null, maxLength?: number | null }} field
 */
export function fieldProblem ({ label, raw, badInput = false, required = false, kind, min = null, max = null, maxLength = null }) {
  const value = String(raw ?? '').trim()
  if (kind === 'text') {
    if (required && value === '') return `${label}: required`
    if (maxLength !== null && raw.length > maxLength) return `${label}: at most ${maxLength} characters`
    return null
  }
  const rule = `${label}: ${kind === 'number' ? numberRule(min, max) : wholeNumberRule(min, max)}`
  if (badInput) return rule
  if (value === '') return required ? rule : null
  const number = Number(value)
  if (kind === 'number' ? !Number.isFinite(number) : !Number.isInteger(number)) return rule
  if (min !== null && number < min) return rule
  if (max !== null && number > max) return rule
  return null
}

function numberRule (min, max) {
  if (min !== null && max !== null) return `a number from ${min} to ${max}`
  if (min !== null) return `a number, at least ${min}`
  if (max !== null) return `a number, at most ${max}`
  return 'a number'
}

function wholeNumberRule (min, max) {
  if (min !== null && max !== null) return `a whole number from ${min} to ${max}`
  if (min !== null) return `a whole number, at least ${min}`
  if (max !== null) return `a whole number, at most ${max}`
  return 'a whole number'
}

/**
 * The field a Fastify validation message is about ("body/n must be <= 2000" → "n";
 * "body must have required property 'steps'" → "steps"), or null.
 * @param {string} message
 */
export function fieldOfApiMessage (message) {
  const path = /^body\/(?:params\/)?([A-Za-z0-9_]+)/.exec(message)
  if (path) return path[1]
  const required = /^body must have required property '([A-Za-z0-9_]+)'/.exec(message)
  return required ? required[1] : null
}
