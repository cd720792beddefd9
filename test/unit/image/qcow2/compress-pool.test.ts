import { randomBytes } from 'node:crypto'
import { inflateRawSync } from 'node:zlib'
import t from 'tap'
import { compressCluster } from '../../../../agent/image/qcow2/compress-cluster.js'
import { compressOnPool, compressPool } from '../../../../agent/image/qcow2/compress-pool.js'
import { decompressCluster } from '../../../../agent/image/qcow2/decompress.js'

/**
 * Clusters compressed as QEMU compresses them (zstd: one frame with its size, no checksum; deflate:
 * a raw stream QEMU's 4 KiB-window inflate reads), the same bytes on the pool's threads as on the
 * main thread (a capture compresses each cluster twice and relies on it), and read back by our
 * decoder.
 */

t.teardown(async () => { await compressPool.close() })

function text (bytes: number, seed: number): Buffer {
  return Buffer.from(`${seed}: a line of a log file, ${seed * 31} and more words\n`.repeat(Math.ceil(bytes / 40))).subarray(0, bytes)
}

for (const clusterBytes of [4096, 65536]) {
  t.test(`${clusterBytes}-byte clusters: the pool gives the main thread's bytes, which decode back`, async (t) => {
    const clusters = [text(clusterBytes, 1), randomBytes(clusterBytes), Buffer.alloc(clusterBytes), text(clusterBytes, 2)]
    for (const type of ['zstd', 'deflate'] as const) {
      const streams = await compressOnPool(type, Buffer.concat(clusters), clusterBytes)
      clusters.forEach((cluster, i) => {
        const stream = streams[i] as Uint8Array
        t.ok(Buffer.from(stream).equals(Buffer.from(compressCluster(type, cluster))), `${type} cluster ${i}: the same stream`)
        const back = new Uint8Array(clusterBytes)
        decompressCluster(type, stream, back)
        t.ok(Buffer.from(back).equals(cluster), `${type} cluster ${i}: decodes back`)
      })
      const lengths = await compressPool.compress(type, clusters, clusterBytes, { keepOutput: false })
      t.same([...lengths.lengths], streams.map((s) => s.length), `${type}: the lengths alone, as the first pass asks`)
      t.equal(lengths.output.length, 0, 'and no bytes')
    }
  })
}

t.test('zstd: one frame, its content size in the header, no checksum (QEMU\'s frame header 0x60)', async (t) => {
  const stream = compressCluster('zstd', text(65536, 3))
  t.equal(Buffer.from(stream).readUInt32LE(0), 0xfd2fb528, 'zstd magic')
  t.equal(stream[4], 0x60, 'frame header descriptor: single segment, 2-byte content size, no checksum')
  t.equal(Buffer.from(stream).readUInt16LE(5) + 256, 65536, 'content size 65536 (2-byte field, offset 256)')
})

t.test('deflate: a 4 KiB window, as QEMU\'s inflateInit2(-12) requires', async (t) => {
  const cluster = Buffer.concat([randomBytes(8192), randomBytes(8192)])
  const repeated = Buffer.concat([cluster, cluster, cluster, cluster]) // matches 16 KiB back: only a larger window would use them
  const stream = compressCluster('deflate', repeated)
  t.ok(inflateRawSync(stream, { windowBits: 12 }).equals(repeated), 'inflates with windowBits 12')
  t.ok(stream.length > 60000, 'the 16 KiB repeats are out of its reach: not compressed')
})
