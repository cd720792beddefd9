import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { WorkerDigest, type DigestType } from '../../../agent/download/running-digest.js'

const MiB = 1024 * 1024
const data = randomBytes(41 * MiB + 4321)

/** `bytes` copied into a new SharedArrayBuffer at `offset`. */
function shared (bytes: Uint8Array, offset = 0): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(offset + bytes.length)
  new Uint8Array(buffer).set(bytes, offset)
  return buffer
}

for (const type of ['md5', 'sha1', 'sha256', 'sha512'] as DigestType[]) {
  t.test(`${type}: the worker's digest equals node:crypto's, whatever the spans`, async (t) => {
    const all = shared(data)
    for (const spanBytes of [1, 65_536, 3 * MiB + 17, 16 * MiB]) {
      const digest = new WorkerDigest(type)
      const size = spanBytes === 1 ? 10_000 : data.length
      for (let at = 0; at < size; at += spanBytes) await digest.updateShared({ buffer: all, offset: at, length: Math.min(spanBytes, size - at) })
      t.equal(await digest.digestHex(), createHash(type).update(data.subarray(0, size)).digest('hex'), `spans of ${spanBytes}`)
    }
  })
}

t.test('an empty input, and a digest dropped unread', async (t) => {
  const digest = new WorkerDigest('sha256')
  t.equal(await digest.digestHex(), createHash('sha256').digest('hex'))
  const dropped = new WorkerDigest('sha256')
  await dropped.updateShared({ buffer: shared(data.subarray(0, 5 * MiB)), offset: 0, length: 5 * MiB })
  dropped.dispose()
  t.pass('disposed without waiting')
})

for (const make of [(type: DigestType) => new WorkerDigest(type)]) {
  t.test('worker: updateShared hashes bytes where they lie, in the order of the calls', async (t) => {
    const parts = [data.subarray(0, 3 * MiB + 5), data.subarray(3 * MiB + 5, 20 * MiB), data.subarray(20 * MiB, 20 * MiB + 77), data.subarray(20 * MiB + 77)]
    const digest = make('sha512')
    const a = shared(parts[0] as Buffer, 100)
    await digest.updateShared({ buffer: a, offset: 100, length: (parts[0] as Buffer).length })
    await digest.updateShared({ buffer: shared(parts[1] as Buffer), offset: 0, length: (parts[1] as Buffer).length, last: true })
    const b = shared(Buffer.concat([parts[2] as Buffer, parts[3] as Buffer]))
    // Both spans posted before either is awaited: the order of the calls is the order hashed.
    const first = digest.updateShared({ buffer: b, offset: 0, length: (parts[2] as Buffer).length })
    const second = digest.updateShared({ buffer: b, offset: (parts[2] as Buffer).length, length: (parts[3] as Buffer).length, last: true })
    await Promise.all([first, second])
    t.equal(await digest.digestHex(), createHash('sha512').update(data).digest('hex'))
  })
}

t.test('worker: a buffer let go of with last is registered again when used again', async (t) => {
  const digest = new WorkerDigest('sha256')
  const buffer = shared(data.subarray(0, MiB))
  await digest.updateShared({ buffer, offset: 0, length: MiB, last: true })
  await digest.updateShared({ buffer, offset: 0, length: MiB })
  t.equal(await digest.digestHex(), createHash('sha256').update(data.subarray(0, MiB)).update(data.subarray(0, MiB)).digest('hex'))
})

t.test('worker: a digest whose thread died fails the spans waiting on it', async (t) => {
  const digest = new WorkerDigest('sha256')
  const pending = digest.updateShared({ buffer: shared(data.subarray(0, 32 * MiB)), offset: 0, length: 32 * MiB })
  digest.dispose()
  await t.rejects(pending, /exited/)
})
