/**
 * The compute threads of one run: worker_threads that share the run's buffers (SharedArrayBuffer) and compute
 * groups of columns of a step on request. The run's own thread computes one group itself while they compute
 * theirs, so `threads` = pool size + 1.
 *
 * Threads are unref'd (they never keep the worker process alive) and die with it on any exit, SIGKILL included;
 * close() terminates them at once.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'

export type ThreadRequest =
  | { kind: 'init', n: number, m: SharedArrayBuffer, c0: SharedArrayBuffer, c1: SharedArrayBuffer }
  | { kind: 'group', id: number, k: number, src: 0 | 1, col0: number, width: number }

export type ThreadReply = { ready: true } | { id: number, norm: number } | { id: number, error: string }

/**
 * Where the thread entry is: next to this module (dist/, .js), or its source when run from src/ under a TypeScript
 * loader. Threads inherit the process's flags (Node accepts its own V8 flags such as --expose-gc when inherited,
 * not when listed again in `execArgv`).
 */
function entryUrl (): URL {
  const js = new URL('./entry.js', import.meta.url)
  return existsSync(fileURLToPath(js)) ? js : new URL('./entry.ts', import.meta.url)
}

/** Most threads a run may have, whatever it is granted. */
export const MAX_THREADS = 64

export interface SharedBuffers {
  n: number
  m: SharedArrayBuffer
  c0: SharedArrayBuffer
  c1: SharedArrayBuffer
}

interface Pending {
  resolve: (norm: number) => void
  reject: (err: Error) => void
}

class ComputeThread {
  readonly worker: Worker
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private failed: Error | null = null
  /** Set once the thread has loaded mathjs and its views on the buffers: until then it is not given work. */
  ready = false

  constructor (shared: SharedBuffers) {
    this.worker = new Worker(entryUrl(), { stdout: false, stderr: false })
    this.worker.unref()
    const fail = (err: Error): void => {
      this.failed ??= err
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
    }
    this.worker.on('error', fail)
    this.worker.on('exit', (code) => fail(new Error(`compute thread exited (code ${code})`)))
    this.worker.on('message', (reply: ThreadReply) => {
      if ('ready' in reply) {
        this.ready = true
        return
      }
      const p = this.pending.get(reply.id)
      if (!p) return
      this.pending.delete(reply.id)
      if ('error' in reply) p.reject(new Error(`compute thread: ${reply.error}`))
      else p.resolve(reply.norm)
    })
    const init: ThreadRequest = { kind: 'init', ...shared }
    this.worker.postMessage(init)
  }

  group (k: number, src: 0 | 1, col0: number, width: number): Promise<number> {
    if (this.failed) return Promise.reject(this.failed)
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      const req: ThreadRequest = { kind: 'group', id, k, src, col0, width }
      this.worker.postMessage(req)
    })
  }
}

export class ProductPool {
  private readonly threads: ComputeThread[] = []

  constructor (private readonly shared: SharedBuffers) {}

  /** Threads in the pool (not counting the caller's). */
  get size (): number {
    return this.threads.length
  }

  /** Grows or shrinks the pool to `count` threads; extra threads are terminated. */
  resize (count: number): void {
    while (this.threads.length < count) this.threads.push(new ComputeThread(this.shared))
    while (this.threads.length > count) this.threads.pop()?.worker.terminate().catch(() => {})
  }

  /** Pool threads that have started and can take a group now (a thread still starting does not hold up a unit). */
  ready (): number {
    let count = 0
    while (count < this.threads.length && this.threads[count].ready) count++
    return count
  }

  /** Group computed by pool thread `index` (< ready()). */
  group (index: number, k: number, src: 0 | 1, col0: number, width: number): Promise<number> {
    return this.threads[index].group(k, src, col0, width)
  }

  /** Terminates every thread; resolves once they are gone. */
  async close (): Promise<void> {
    const all = this.threads.splice(0)
    await Promise.all(all.map((t) => t.worker.terminate()))
  }
}
