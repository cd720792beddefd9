import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { SlabFeed, type DownloadSink, type Slab } from '../../../agent/download/slab-feed.js'

/** A sink that records the slabs it takes; `keep` decides whether it lets them go. */
function recordingSink (slabBytes: number, keep: boolean): DownloadSink & { slabs: Slab[]; bytes: () => Buffer } {
  const slabs: Slab[] = []
  return {
    slabs,
    bytes: () => Buffer.concat(slabs.map((slab) => Buffer.from(slab.data))),
    begin: () => {},
    slabBytes: () => slabBytes,
    take: async (slab) => {
      slabs.push(keep ? slab : { ...slab, data: Buffer.from(slab.data) })
      if (!keep) slab.release()
    },
    rewind: () => { slabs.length = 0 },
  }
}

t.test('every byte reaches the sink once, in order, in slabs of the size it asks, and the digest is of them all', async (t) => {
  const data = randomBytes(1_000_000 + 7)
  const sink = recordingSink(65_536, true)
  const feed = new SlabFeed(sink, 'sha256')
  for (let at = 0; at < data.length; at += 10_007) await feed.write(data.subarray(at, at + 10_007))
  t.equal(await feed.end(), createHash('sha256').update(data).digest('hex'))
  t.ok(sink.bytes().equals(data))
  t.same(sink.slabs.map((slab) => slab.offset), Array.from({ length: Math.ceil(data.length / 65_536) }, (_, i) => i * 65_536))
  t.ok(sink.slabs.every((slab) => slab.data.buffer instanceof SharedArrayBuffer), 'shared memory')
  t.equal(new Set(sink.slabs.map((slab) => slab.data.buffer)).size, sink.slabs.length, 'kept slabs are never reused')
})

t.test('a released slab holds later bytes once hashed: with no digest, at once', async (t) => {
  const data = randomBytes(2_000_000)
  const sink = recordingSink(65_536, false)
  const buffers = new Set<ArrayBufferLike>()
  const take = sink.take.bind(sink)
  sink.take = async (slab) => {
    buffers.add(slab.data.buffer)
    await take(slab)
  }
  const feed = new SlabFeed(sink, undefined)
  for (let at = 0; at < data.length; at += 65_536) await feed.write(data.subarray(at, at + 65_536))
  await feed.end()
  t.ok(sink.bytes().equals(data))
  t.ok(buffers.size <= 2, `${buffers.size} slabs for ${sink.slabs.length} takes`)
})

t.test('released slabs with a digest: each is reused only once hashed, so the digest is of the bytes as they came', async (t) => {
  const data = randomBytes(2_000_000)
  const sink = recordingSink(65_536, false)
  const feed = new SlabFeed(sink, 'sha512')
  for (let at = 0; at < data.length; at += 65_536) await feed.write(data.subarray(at, at + 65_536))
  t.equal(await feed.end(), createHash('sha512').update(data).digest('hex'))
  t.ok(sink.bytes().equals(data))
})

t.test('a digest slower than the bytes: the feed waits for it, the slabs in use bounded (8 MiB not hashed, at most)', async (t) => {
  const slabBytes = 1024 * 1024
  const data = randomBytes(64 * slabBytes)
  const sink = recordingSink(slabBytes, false)
  const buffers = new Set<ArrayBufferLike>()
  const take = sink.take.bind(sink)
  sink.take = async (slab) => {
    buffers.add(slab.data.buffer)
    await take(slab)
  }
  const feed = new SlabFeed(sink, 'sha512')
  // Copies run at memory speed, sha512 at ~0.5 GB/s on a worker: unbounded, every slab would be a new one.
  for (let at = 0; at < data.length; at += slabBytes) await feed.write(data.subarray(at, at + slabBytes))
  t.equal(await feed.end(), createHash('sha512').update(data).digest('hex'))
  t.ok(buffers.size <= 8 + 2, `${buffers.size} slabs for 64: those waiting for the digest (8 MiB), the one handed over and the next`)
})

t.test('rewind: a new digest, and the next slab starts at byte 0', async (t) => {
  const sink = recordingSink(4096, true)
  const feed = new SlabFeed(sink, 'sha1')
  await feed.write(randomBytes(10_000))
  await feed.rewind()
  const data = randomBytes(9000)
  await feed.write(data)
  t.equal(await feed.end(), createHash('sha1').update(data).digest('hex'))
  t.equal(sink.slabs[0]?.offset, 0)
  t.ok(sink.bytes().equals(data))
})

t.test('no digest asked: none computed, the bytes still go through', async (t) => {
  const sink = recordingSink(1000, true)
  const feed = new SlabFeed(sink, undefined)
  await feed.write(Buffer.alloc(2500, 1))
  t.equal(await feed.end(), undefined)
  t.same(sink.slabs.map((slab) => slab.data.length), [1000, 1000, 500])
})

t.test('an error from the sink comes back unchanged', async (t) => {
  const boom = new Error('disk full')
  const sink = recordingSink(1000, true)
  sink.take = async () => { throw boom }
  const feed = new SlabFeed(sink, 'md5')
  t.equal(await feed.write(Buffer.alloc(1500)).catch((err: unknown) => err), boom)
  feed.dispose()
})
