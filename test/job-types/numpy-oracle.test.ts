/**
 * A second oracle: numpy (Debian's python3-numpy). Skipped when python3 cannot import numpy.
 * numpy reads our .npy and CSV downloads to the same bits (same sha256, computed numpy's way), and its products
 * agree with matmul/matpow to rounding (BLAS sums in another order, so not bit for bit).
 */
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ChainRun } from '../../src/job-types/chain.js'
import { matmulChain } from '../../src/job-types/matmul.js'
import { matpowChain } from '../../src/job-types/matpow.js'
import { FORMATS } from '../../src/matrices/formats/index.js'
import { type Matrix64, matrixSha256 } from '../../src/matrices/matrix.js'
import { matrixContext } from '../fixtures/jobctx.js'
import { awkwardMatrix, collect, intMatrix } from '../fixtures/matrices.js'

const probe = spawnSync('python3', ['-c', 'import numpy'], { timeout: 30_000 })
if (probe.status !== 0) {
  t.comment('python3 with numpy is not available (apt-get install -y python3-numpy): numpy oracle skipped')
  t.pass('skipped: no numpy')
} else {
  const python = (dir: string, script: string): string => {
    const res = spawnSync('python3', ['-c', script], { cwd: dir, timeout: 60_000, encoding: 'utf8' })
    if (res.status !== 0) throw new Error(`python3 failed: ${res.stderr}`)
    return res.stdout.trim()
  }

  t.test('numpy reads our .npy and CSV to the same bits, and hashes them as we do', async (t) => {
    const dir = t.testdir({})
    const m = awkwardMatrix(17, 23, 5)
    writeFileSync(join(dir, 'm.npy'), collect(FORMATS.npy.write(m, '')))
    writeFileSync(join(dir, 'm.csv'), collect(FORMATS.csv.write(m, '')))
    // Values exact in float32 for the >f4 file.
    const small = { ...intMatrix(17, 23, 4), data: intMatrix(17, 23, 4).data.map((x) => x / 8) }
    writeFileSync(join(dir, 's.npy'), collect(FORMATS.npy.write(small, '')))
    const out = python(dir, `
import hashlib, numpy as np
h = lambda a: hashlib.sha256(np.ascontiguousarray(a, dtype='<f8').tobytes()).hexdigest()
print(h(np.load('m.npy', allow_pickle=False)))
print(h(np.loadtxt('m.csv', delimiter=',', ndmin=2)))
np.save('f.npy', np.asfortranarray(np.load('s.npy').astype('>f4')))
`).split('\n')
    t.same(out, [matrixSha256(m.data), matrixSha256(m.data)], 'same sha256 from .npy and from CSV')
    const f4 = FORMATS.npy.parse(readFileSync(join(dir, 'f.npy')), { maxBytes: 1 << 20 })
    t.same(Array.from(f4.data), Array.from(small.data), 'numpy\'s own >f4 Fortran-order file is read right')
  })

  t.test('matmul and matpow agree with numpy to rounding', async (t) => {
    const dir = t.testdir({})
    const { ctx, out, put, matrices } = matrixContext(t)
    const scaled = (m: Matrix64, s: number): Matrix64 => ({ ...m, data: m.data.map((x) => x / s) })
    const a = scaled(intMatrix(30, 50, 1, 1000), 997)
    const b = scaled(intMatrix(50, 40, 2, 1000), 991)
    const c = scaled(intMatrix(40, 40, 3, 1000), 40000)
    const ids = [put(a), put(b), put(c)]
    ;[a, b, c].forEach((m, i) => writeFileSync(join(dir, `${i}.npy`), collect(FORMATS.npy.write(m, ''))))
    python(dir, `
import numpy as np
a, b, c = (np.load(f'{i}.npy') for i in range(3))
np.save('chain.npy', a @ b @ c)
np.save('pow.npy', np.linalg.matrix_power(c, 13))
`)
    const check = (id: number, file: string, what: string): void => {
      const ours = matrices.load(id).data
      const theirs = FORMATS.npy.parse(readFileSync(join(dir, file)), { maxBytes: 1 << 24 }).data
      let worst = 0
      let scale = 0
      for (let i = 0; i < ours.length; i++) {
        worst = Math.max(worst, Math.abs(ours[i] - theirs[i]))
        scale = Math.max(scale, Math.abs(theirs[i]))
      }
      t.equal(ours.length, theirs.length, `${what}: same size`)
      t.ok(worst <= 1e-12 * scale, `${what}: largest difference ${worst} against entries up to ${scale}`)
    }
    const chain = new ChainRun(matmulChain({ matrices: ids }), undefined, ctx)
    while (!chain.finished) chain.advance()
    check(chain.result(out()).matrix as number, 'chain.npy', 'A·B·C')
    const pow = new ChainRun(matpowChain({ matrix: ids[2], exponent: 13 }), undefined, ctx)
    while (!pow.finished) pow.advance()
    check(pow.result(out()).matrix as number, 'pow.npy', 'C^13')
  })
}
