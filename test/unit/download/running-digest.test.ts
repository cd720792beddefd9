import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { inlineDigest, WorkerDigest, type DigestType } from '../../../agent/download/running-digest.js'

const MiB = 1024 * 1024
// 41 MiB + a bit: more than the 8 shared 4 MiB segments, so update has to wait for the worker.
const data = randomBytes(41 * MiB + 4321)

for (const type of ['md5', 'sha1', 'sha256', 'sha512'] as DigestType[]) {
  t.test(`${type}: the worker's digest equals node:crypto's, whatever the chunking`, async (t) => {
    const expected = createHash(type).update(data).digest('hex')
    for (const chunkBytes of [1, 65_536, 3 * MiB + 17, 16 * MiB]) {
      const digest = new WorkerDigest(type)
      const small = chunkBytes === 1 ? data.subarray(0, 100_000) : data
      for (let at = 0; at < small.length; at += chunkBytes) await digest.update(small.subarray(at, at + chunkBytes))
      t.equal(await digest.digestHex(), createHash(type).update(small).digest('hex'), `chunks of ${chunkBytes}`)
    }
    const inline = inlineDigest(type)
    await inline.update(data)
    t.equal(await inline.digestHex(), expected, 'inline too')
  })
}

t.test('an empty input, and a digest dropped unread', async (t) => {
  const digest = new WorkerDigest('sha256')
  t.equal(await digest.digestHex(), createHash('sha256').digest('hex'))
  const dropped = new WorkerDigest('sha256')
  await dropped.update(data.subarray(0, 5 * MiB))
  dropped.dispose()
  t.pass('disposed without waiting')
})
