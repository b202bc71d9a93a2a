/**
 * A compute thread of a job: receives the shared buffers of its run once, then computes the groups of
 * columns it is sent with the same ProductKernel the main thread uses, and answers each with its norm.
 */
import { parentPort } from 'node:worker_threads'
import { ProductKernel } from './product.js'
import type { ThreadReply, ThreadRequest } from './pool.js'

let kernel: ProductKernel | null = null
const port = parentPort
if (port) {
  port.on('message', (msg: ThreadRequest) => {
    if (msg.kind === 'init') {
      kernel = new ProductKernel({ n: msg.n, m: new Float64Array(msg.m), c: [new Float64Array(msg.c0), new Float64Array(msg.c1)] })
      const ready: ThreadReply = { ready: true }
      port.postMessage(ready)
      return
    }
    let reply: ThreadReply
    try {
      if (!kernel) throw new Error('compute thread used before init')
      reply = { id: msg.id, norm: kernel.group(msg.k, msg.src, msg.col0, msg.width) }
    } catch (err) {
      reply = { id: msg.id, error: err instanceof Error ? err.message : String(err) }
    }
    port.postMessage(reply)
  })
}
