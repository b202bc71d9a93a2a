/**
 * The compute threads of one run: worker_threads that share the run's buffers (SharedArrayBuffer) and compute
 * parts of a product on request (lyapunov: groups of columns of a step, src/jobs/threads/product.ts; matmul and
 * matpow: rows of a panel, src/jobs/threads/chain-product.ts). The run's own thread computes one part itself while
 * they compute theirs, so `threads` = pool size + 1.
 *
 * Threads are unref'd (they never keep the worker process alive) and die with it on any exit, SIGKILL included;
 * close() terminates them at once.
 *
 * A thread that dies (out of memory, a crash in its isolate) loses no work: its part of the unit is computed on the
 * run's own thread instead (callOr), by the same mathjs calls on the same buffers, so the bits do not change; the
 * pool replaces it at the next unit. After MAX_LOST_THREADS deaths a run starts no more threads: it goes on with
 * the ones left, or alone.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'

/** Messages that set a thread's buffers: answered by nothing. */
export type ThreadSetup =
  | { kind: 'init', n: number, m: SharedArrayBuffer, c0: SharedArrayBuffer, c1: SharedArrayBuffer }
  | { kind: 'chain-product', index: number, r: number, m: number, n: number, p: SharedArrayBuffer, right: SharedArrayBuffer, next: SharedArrayBuffer }

/** Work: answered by one number (lyapunov: the group's norm; chain: the first non-finite entry, or -1). */
export type ThreadWork =
  | { kind: 'group', k: number, src: 0 | 1, col0: number, width: number }
  | { kind: 'chain-rows', index: number, panel: number, i0: number, i1: number }

export type ThreadRequest = ThreadSetup | (ThreadWork & { id: number })

export type ThreadReply = { ready: true } | { id: number, value: number } | { id: number, error: string }

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

/** Deaths of compute threads after which a run starts no more of them (it goes on with those left, or alone). */
export const MAX_LOST_THREADS = 3

/** A compute thread ended (its isolate ran out of memory, crashed, or was terminated) with work outstanding. */
export class ComputeThreadLost extends Error {}

export interface SharedBuffers {
  n: number
  m: SharedArrayBuffer
  c0: SharedArrayBuffer
  c1: SharedArrayBuffer
}

interface Pending {
  resolve: (value: number) => void
  reject: (err: Error) => void
}

class ComputeThread {
  readonly worker: Worker
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private failed: Error | null = null
  /** Set once the thread has loaded mathjs and its views on the buffers: until then it is not given work. */
  ready = false

  constructor (init?: ThreadSetup) {
    this.worker = new Worker(entryUrl(), { stdout: false, stderr: false })
    this.worker.unref()
    const threadId = this.worker.threadId
    const fail = (cause: Error): void => {
      const err = new ComputeThreadLost(`compute thread ${threadId} ended: ${cause.message}`, { cause })
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
      else p.resolve(reply.value)
    })
    if (init) this.worker.postMessage(init)
  }

  /** Whether the thread has died. */
  get lost (): boolean {
    return this.failed !== null
  }

  /** Sets buffers; messages are handled in order, so work sent after it sees them. */
  setup (msg: ThreadSetup): void {
    this.worker.postMessage(msg)
  }

  call (work: ThreadWork): Promise<number> {
    if (this.failed) return Promise.reject(this.failed)
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      const req: ThreadRequest = { ...work, id }
      this.worker.postMessage(req)
    })
  }
}

export class ThreadPool {
  private threads: ComputeThread[] = []
  /** What each thread was last set up with (chain runs send a product's buffers to a thread once). */
  private setups: Array<ThreadSetup | undefined> = []
  /** Threads asked for by the last resize(). */
  private target = 0
  /** Dead threads already dropped from the pool. */
  private dropped = 0
  /** Set by close(): threads it ends are not deaths, and their parts are not computed again. */
  private closed = false

  /** `init`: buffers every thread is given when it starts (lyapunov's, fixed for the run). `onLost`: told of each
   *  part of a unit that a dying thread left to the caller's thread. */
  constructor (private readonly init?: ThreadSetup, private readonly onLost?: (err: ComputeThreadLost) => void) {}

  /** Threads in the pool (not counting the caller's). */
  get size (): number {
    return this.threads.length
  }

  /** Threads of this pool that died. */
  get lost (): number {
    return this.dropped + this.threads.filter((t) => t.lost).length
  }

  /** Whether threads died often enough that the pool starts no more (see MAX_LOST_THREADS). */
  get exhausted (): boolean {
    return this.lost >= MAX_LOST_THREADS
  }

  /** Grows or shrinks the pool to `count` threads; extra threads are terminated. */
  resize (count: number): void {
    this.target = count
    this.prune()
    while (this.threads.length < count && !this.exhausted) {
      this.threads.push(new ComputeThread(this.init))
      this.setups.push(undefined)
    }
    while (this.threads.length > count) {
      this.setups.pop()
      this.threads.pop()?.worker.terminate().catch(() => {})
    }
  }

  /** Drops dead threads (counting them in `lost`) and starts replacements up to the last resize(), unless exhausted. */
  private prune (): void {
    if (!this.threads.some((t) => t.lost)) return
    const keep = this.threads.map((t) => !t.lost)
    this.dropped += keep.filter((k) => !k).length
    this.setups = this.setups.filter((_, i) => keep[i])
    this.threads = this.threads.filter((_, i) => keep[i])
    if (this.threads.length < this.target) this.resize(this.target)
  }

  /** Pool threads that have started and can take a group now (a thread still starting does not hold up a unit). */
  ready (): number {
    this.prune()
    let count = 0
    while (count < this.threads.length && this.threads[count].ready) count++
    return count
  }

  /** Work done by pool thread `index` (< ready()), after `setup` if it was not the thread's last one. */
  call (index: number, work: ThreadWork, setup?: ThreadSetup): Promise<number> {
    if (setup && this.setups[index] !== setup) {
      this.threads[index].setup(setup)
      this.setups[index] = setup
    }
    return this.threads[index].call(work)
  }

  /**
   * call(), or `local()` on the caller's thread when the pool thread dies before it answers: `local` must compute
   * exactly what `work` asks for, so the result is the same either way. A thread's error reply (its computation
   * threw) is not retried: it rejects.
   */
  callOr (index: number, work: ThreadWork, local: () => number, setup?: ThreadSetup): Promise<number> {
    return this.call(index, work, setup).catch((err: unknown) => {
      if (!(err instanceof ComputeThreadLost) || this.closed) throw err
      this.onLost?.(err)
      return local()
    })
  }

  /** Terminates every thread; resolves once they are gone. */
  async close (): Promise<void> {
    this.closed = true
    const all = this.threads.splice(0)
    this.setups.splice(0)
    await Promise.all(all.map((t) => t.worker.terminate()))
  }
}

/** onLost for a job's log: one warning per part of a unit recomputed on the run's own thread. */
export function threadLost (log: { warn (obj: object, msg?: string): void }): (err: Error) => void {
  return (err) => log.warn({ err, event: 'compute-thread-lost' }, 'a compute thread died; its part of the unit was computed on the worker\'s own thread (same result)')
}
