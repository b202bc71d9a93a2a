// The Node flags of the server, printed for the shell: `npm start` runs `node $(node scripts/server-flags.js)
// dist/server.js`; `node scripts/server-flags.js 20.11.0` prints another version's.
//
// Every version: a heap limit and a young generation sized for the server (a worker's heap is its own).
// Node ≥ 22 also gets --optimize-for-size --no-maglev. On Node 24 the server's peak RSS under load (100 000 jobs,
// autocannon) was 134–135 MB against its 120 MB target: V8 lets the heap grow ~20 MB further than Node 20's and its
// mid-tier compiler (Maglev, on by default since Node 22) adds ~8 MB; with the two flags it is 112–113 MB, latency
// within the host's spread. Node 20 stays at 91–98 MB without them, and there --optimize-for-size raised the p99 of
// GET /api/jobs under autocannon (25–31 ms idle against 17–19). docs/benchmarks.md, "2026-12-07, morning".
// Workers inherit none of these (src/jobs/scheduler.ts, SERVER_MEMORY_FLAG).
import { fileURLToPath } from 'node:url'

/** The server's Node flags for a Node version ("24.1.0"). */
export function serverNodeFlags (version = process.versions.node) {
  const major = Number(version.replace(/^v/, '').split('.')[0])
  if (!Number.isInteger(major)) throw new Error(`not a Node version: ${version}`)
  const flags = ['--max-semi-space-size=2', '--max-old-space-size=128']
  if (major >= 22) flags.push('--optimize-for-size', '--no-maglev')
  return flags
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(serverNodeFlags(process.argv[2]).join(' '))
