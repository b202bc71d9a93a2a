/**
 * node:crypto, loaded on its first use. A worker imports the modules that hash matrices and draw seeds, yet most
 * jobs call neither; loading node:crypto (some twenty internal modules) at import cost every worker ~10 ms of CPU at
 * start (docs/benchmarks.md, "Worker start").
 */
import { createRequire } from 'node:module'

type Crypto = typeof import('node:crypto')

const load = createRequire(import.meta.url)
let crypto: Crypto | undefined

export function lazyCrypto (): Crypto {
  crypto ??= load('node:crypto') as Crypto
  return crypto
}
