import t from 'tap'
// The dashboard's pure helpers, the very file the page loads.
import { duration, fieldOfApiMessage, fieldProblem, percent, ProgressTracker } from '../../public/format.js'

t.test('duration rounds before it splits into units', async (t) => {
  t.equal(duration(119_600), '2 m 00 s', '119.6 s is two minutes, not "1 m 60 s"')
  t.equal(duration(59_600), '1 m 00 s', '59.6 s rounds up to a minute')
  t.equal(duration(9_960), '10 s', '9.96 s is "10 s", not "10.0 s"')
  t.equal(duration(9_940), '9.9 s', 'tenths under ten seconds')
  t.equal(duration(65_000), '1 m 05 s', 'seconds two digits wide under minutes')
  t.equal(duration(3_599_600), '1 h 00 m', 'just under an hour rounds to one hour, not "59 m 60 s"')
  t.equal(duration(3 * 3_600_000 + 59.6 * 60_000), '4 h 00 m', 'minutes round up into the hour')
  t.equal(duration(-5), '0.0 s', 'never negative')
  t.equal(duration(null), '—', 'no value')
  t.equal(duration(Number.NaN), '—', 'not a number')
})

t.test('percent', async (t) => {
  t.equal(percent(17.7), '17.7 %')
  t.equal(percent(100), '100.0 %')
  t.equal(percent(undefined), '—')
})

/** A worker at a steady pace with jittery beats: progress written every ~`beatMs`, rounded to 0.01 % like the worker. */
function steadyRun (totalMs: number, beatMs: number, jitterMs: number, seed = 1): Array<{ t: number, progress: number }> {
  let x = seed
  const random = (): number => { x = (x * 1103515245 + 12345) % 2 ** 31; return x / 2 ** 31 }
  const start = 1_000_000
  const beats = []
  for (let at = beatMs; at < totalMs; at += beatMs + (random() - 0.5) * 2 * jitterMs) {
    beats.push({ t: Math.round(start + at), progress: Math.round((at / totalMs) * 10000) / 100 })
  }
  return beats
}

t.test('at a steady pace the ETA only ever counts down', async (t) => {
  for (const [totalMs, beatMs, jitterMs] of [[36_000, 1000, 150], [200_000, 1000, 300], [3_600_000, 1000, 400], [20_000, 50, 20]]) {
    const beats = steadyRun(totalMs, beatMs, jitterMs)
    const tracker = new ProgressTracker()
    const start = 1_000_000
    let previous = Infinity
    let rises = 0
    let worst = 0
    let checks = 0
    for (let i = 0; i < beats.length; i++) {
      tracker.add(beats[i].t, beats[i].progress, start)
      // What the page shows each 100 ms until the next beat arrives (written ~50 ms before it is seen).
      const until = i + 1 < beats.length ? beats[i + 1].t : beats[i].t + beatMs
      for (let now = beats[i].t + 50; now < until + 50; now += 100) {
        const eta = tracker.eta(now)
        if (eta === null) continue
        checks++
        if (eta > previous) { rises++; worst = Math.max(worst, eta - previous) }
        previous = eta
      }
    }
    t.ok(checks > beats.length / 2, `an ETA was shown (${checks} times) for a ${totalMs / 1000} s job`)
    t.equal(rises, 0, `a ${totalMs / 1000} s job with beats every ${beatMs}±${jitterMs} ms: the ETA never rose (worst rise ${worst.toFixed(0)} ms)`)
    const halfway = beats[Math.floor(beats.length / 2)]
    const eta = tracker.eta(halfway.t)
    t.ok(eta !== null, 'known at the end')
    t.ok(Math.abs((tracker.eta(beats[beats.length - 1].t) ?? 0) - (start + totalMs - beats[beats.length - 1].t)) < Math.max(1000, totalMs * 0.02),
      'and close to the true time left')
  }
})

t.test('the first estimate comes from progress over the run time so far', async (t) => {
  const tracker = new ProgressTracker()
  t.equal(tracker.eta(0), null, 'unknown before any sample')
  tracker.add(12_000, 17.7, 0)
  t.ok(Math.abs((tracker.eta(12_000) ?? 0) - (12_000 / 17.7) * 82.3) < 1, 'one sample at 17.7 % after 12 s: about 55.8 s left')
  t.equal(tracker.eta(100_000), 0, 'an overdue job shows 0, never a negative time')
  const noStart = new ProgressTracker()
  noStart.add(12_000, 17.7)
  t.equal(noStart.eta(12_000), null, 'with no known start a single sample gives no estimate')
})

t.test('a slowdown moves the ETA gradually, a resumed attempt starts afresh', async (t) => {
  const tracker = new ProgressTracker()
  for (let s = 1; s <= 20; s++) tracker.add(s * 1000, s, 0)
  const before = tracker.eta(20_000) ?? 0
  t.ok(Math.abs(before - 80_000) < 1000, `1 %/s: 80 s left at 20 % (${before})`)
  for (let s = 1; s <= 10; s++) tracker.add(20_000 + s * 2000, 20 + s * 0.5, 0)
  const after = tracker.eta(40_000) ?? 0
  t.ok(after > 75_000, `halving the pace for 20 s pushes the finish later (${after} ms left at 25 %)`)
  tracker.add(41_000, 10, null)
  t.equal(tracker.eta(41_000), null, 'progress going back (resumed from an older checkpoint) forgets the old estimate')
  t.equal(tracker.samples.length, 1, 'and the old samples')
})

t.test('whole-step progress: beats in between do not make the ETA climb', async (t) => {
  const tracker = new ProgressTracker()
  let previous = Infinity
  let rises = 0
  // 4 steps of 10 s each, the progress only moves at the end of a step; beats every second.
  for (let s = 1; s <= 39; s++) {
    tracker.add(s * 1000, Math.floor(s / 10) * 25, 0)
    const eta = tracker.eta(s * 1000 + 50)
    if (eta !== null && s > 10) { if (eta > previous) rises++; previous = eta }
  }
  t.equal(rises, 0, 'the ETA counted down between steps')
})

t.test('form fields in plain words', async (t) => {
  const n = { label: 'Matrix size n', kind: 'integer' as const, required: true, min: 1, max: 2000 }
  t.equal(fieldProblem({ ...n, raw: '5000' }), 'Matrix size n: a whole number from 1 to 2000', 'too large')
  t.equal(fieldProblem({ ...n, raw: '0' }), 'Matrix size n: a whole number from 1 to 2000', 'too small')
  t.equal(fieldProblem({ ...n, raw: '1.5' }), 'Matrix size n: a whole number from 1 to 2000', 'not whole')
  t.equal(fieldProblem({ ...n, raw: '' }), 'Matrix size n: a whole number from 1 to 2000', 'missing')
  t.equal(fieldProblem({ ...n, raw: '', badInput: true }), 'Matrix size n: a whole number from 1 to 2000', 'not a number at all')
  t.equal(fieldProblem({ ...n, raw: ' 200 ' }), null, 'fine')
  t.equal(fieldProblem({ label: 'Seed', kind: 'integer', raw: '', min: 0, max: 4294967295 }), null, 'an optional field may be empty')
  t.equal(fieldProblem({ label: 'Priority', kind: 'integer', raw: '-3.5' }), 'Priority: a whole number', 'no bounds')
  t.equal(fieldProblem({ label: 'Name', kind: 'text', raw: 'x'.repeat(201), maxLength: 200 }), 'Name: at most 200 characters', 'too long')
  t.equal(fieldOfApiMessage('body/n must be <= 2000'), 'n', 'a Fastify message names its field')
  t.equal(fieldOfApiMessage("body must have required property 'steps'"), 'steps', 'a missing property too')
  t.equal(fieldOfApiMessage('queue is full'), null, 'other messages name none')
})
