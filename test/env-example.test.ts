import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadConfig } from '../src/config.js'
import { ROOT } from './fixtures/helpers.js'

t.test('.env.example names every variable config.ts reads, each with a comment, and means the defaults', async (t) => {
  const example = readFileSync(join(ROOT, '.env.example'), 'utf8')
  const source = readFileSync(join(ROOT, 'src/config.ts'), 'utf8')
  const read = new Set([...source.matchAll(/merged(?:\.([A-Z_]+)|, '([A-Z_]+)')/g)].map((m) => m[1] ?? m[2]))
  const lines = example.split('\n')
  const listed = lines.map((l, i) => [/^([A-Z_]+)=/.exec(l)?.[1], i] as const).filter(([k]) => k)
  t.same(listed.map(([k]) => k).sort(), [...read].sort(), 'the same variables')
  for (const [key, i] of listed) t.match(lines[i - 1], /^# \S/, `${key} has a comment line above it`)
  t.same(loadConfig({}, join(ROOT, '.env.example')), loadConfig({}, null), 'copied as .env, it changes nothing')
})
