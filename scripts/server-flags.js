// The Node flags of the server, printed for the shell: `npm start` runs
// `flags=$(NODE_OPTIONS= node scripts/server-flags.js) && exec node $flags dist/server.js` (NODE_OPTIONS cleared so
// that code preloaded into the server cannot print into its command line; a failure here stops npm start).
// `node scripts/server-flags.js 20.11.0` prints another version's.
//
// Every version: a heap limit and a young generation sized for the server (a worker's heap is its own).
// Node >= 22 also gets --optimize-for-size --no-maglev. On Node 24 the server's peak RSS under load (100 000 jobs,
// autocannon) was 134–135 MB against its 120 MB target: V8 let its heap pages grow ~20 MB further than Node 20's and
// its mid-tier compiler (Maglev, on by default since Node 22) added ~8 MB; with the two flags it is 112–113 MB,
// latency within the host's spread. Measured on Node 24; Node 22 gets them for the same reasons, unmeasured. Node 20
// stays at 95–99 MB without them, and with them its p99 under autocannon spread higher (idle 16.8–35.6 ms against
// 17.6–23.9). docs/benchmarks.md, "2026-12-07, morning". They go on node's command line: Node >= 22 refuses both in
// NODE_OPTIONS. Workers inherit none of these (src/jobs/scheduler.ts, SERVER_MEMORY_FLAG).
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** The server's Node flags for a Node version ("24.1.0"). */
export function serverNodeFlags (version = process.versions.node) {
  const major = Number(version.replace(/^v/, '').split('.')[0])
  if (!Number.isInteger(major)) throw new Error(`not a Node version: ${version}`)
  const flags = ['--max-semi-space-size=2', '--max-old-space-size=128']
  if (major >= 22) flags.push('--optimize-for-size', '--no-maglev')
  return flags
}

// Run as a script (also through a symlinked path; Node resolves the main module's links, so import.meta.url is real).
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) console.log(serverNodeFlags(process.argv[2]).join(' '))
