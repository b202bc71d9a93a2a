/**
 * A compute thread of a job: computes the parts of a product it is sent with the same kernels the run's own
 * thread uses (lyapunov: ProductKernel, on buffers received once; matmul and matpow: ChainKernel, on each product's
 * buffers), and answers each part with one number.
 */
import { parentPort } from 'node:worker_threads'
import { ChainKernel } from './chain-product.js'
import type { ThreadReply, ThreadRequest } from './pool.js'
import { ProductKernel } from './product.js'

let kernel: ProductKernel | null = null
const chain = new ChainKernel()
const port = parentPort
if (port) {
  port.on('message', (msg: ThreadRequest) => {
    if (msg.kind === 'init') {
      kernel = new ProductKernel({ n: msg.n, m: new Float64Array(msg.m), c: [new Float64Array(msg.c0), new Float64Array(msg.c1)] })
      return
    }
    if (msg.kind === 'chain-product') {
      const { index, r, m, n } = msg
      chain.product({ index, r, m, n, p: new Float64Array(msg.p), right: new Float64Array(msg.right), next: new Float64Array(msg.next) })
      return
    }
    let reply: ThreadReply
    try {
      if (msg.kind === 'group') {
        if (!kernel) throw new Error('compute thread used before init')
        reply = { id: msg.id, value: kernel.group(msg.k, msg.src, msg.col0, msg.width) }
      } else {
        reply = { id: msg.id, value: chain.unit(msg.panel, msg.i0, msg.i1) }
      }
    } catch (err) {
      reply = { id: msg.id, error: err instanceof Error ? err.message : String(err) }
    }
    port.postMessage(reply)
  })
  // mathjs is loaded (the kernels' modules load it): the thread can take work.
  const ready: ThreadReply = { ready: true }
  port.postMessage(ready)
}
