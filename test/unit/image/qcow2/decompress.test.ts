import t from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { deflateRawSync } from 'node:zlib'
import { decompressCluster, inflateCluster, zstdDecompressCluster } from '../../../../agent/image/qcow2/decompress.js'
import { ClusterDecodeError, DecompressPool } from '../../../../agent/image/qcow2/decompress-pool.js'
import { inflateClusters } from '../../../../agent/image/qcow2/inflate-async.js'

/**
 * The two codecs on their own: a cluster must come out whole and exact, the trailing bytes of the
 * next cluster ignored, and anything else refused with an Error (never a hang or a crash).
 */

const CLUSTER = 65536

/** Compressible but not trivial: lines of text with counters. */
function clusterData (seed: number, bytes = CLUSTER): Buffer {
  const out = Buffer.alloc(bytes)
  let at = 0
  for (let line = seed; at < bytes; line++) at += out.write(`${line}: ${(line * 2654435761) >>> 0} qcow2 cluster\n`, at)
  return out
}

function zstd (data: Buffer, args: string[] = []): Buffer {
  return execFileSync('zstd', ['-q', '-c', ...args], { input: data })
}

t.test('deflate', async (t) => {
  const data = clusterData(1)
  const stream = deflateRawSync(data, { windowBits: 12 }) // as qemu writes it
  const out = Buffer.alloc(CLUSTER)
  inflateCluster(stream, out)
  t.ok(out.equals(data), 'one cluster')
  out.fill(0)
  inflateCluster(Buffer.concat([stream, randomBytes(300)]), out)
  t.ok(out.equals(data), 'the next cluster\'s bytes after the stream are ignored')
  out.fill(0)
  inflateCluster(deflateRawSync(data), out)
  t.ok(out.equals(data), 'a 32 KiB window decodes too')
  t.throws(() => { inflateCluster(deflateRawSync(data.subarray(0, CLUSTER - 1)), out) }, /gave 65535 bytes instead of 65536/, 'one byte short')
  t.throws(() => { inflateCluster(deflateRawSync(Buffer.concat([data, data.subarray(0, 1)])), out) }, { code: 'ERR_BUFFER_TOO_LARGE' }, 'one byte over')
  t.throws(() => { inflateCluster(stream.subarray(0, stream.length >> 1), out) }, /instead of 65536/, 'a stream cut short')
  t.throws(() => { inflateCluster(Buffer.alloc(512), out) }, 'zeros')
  t.throws(() => { inflateCluster(Buffer.alloc(0), out) }, 'nothing')
})

t.test('deflate on libuv\'s pool (inflateClusters): the same rules, a failure names its cluster', async (t) => {
  const data = [clusterData(11), clusterData(12), clusterData(13)]
  const streams = data.map((d) => deflateRawSync(d, { windowBits: 12 }))
  const out = await inflateClusters([streams[0] as Buffer, Buffer.concat([streams[1] as Buffer, randomBytes(300)]), streams[2] as Buffer], CLUSTER)
  t.ok(out.equals(Buffer.concat(data)), 'three clusters end to end, trailing bytes ignored')
  const fails = async (inputs: Buffer[], index: number, message: RegExp, what: string): Promise<void> => {
    const err: unknown = await inflateClusters(inputs, CLUSTER).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof ClusterDecodeError, `${what}: a ClusterDecodeError`)
    t.equal((err as ClusterDecodeError).index, index, `${what}: names cluster ${index}`)
    t.match((err as Error).message, message, `${what}: says why`)
  }
  const good = streams[0] as Buffer
  await fails([good, deflateRawSync((data[1] as Buffer).subarray(0, CLUSTER - 1))], 1, /gave 65535 bytes instead of 65536/, 'one byte short')
  await fails([good, good, deflateRawSync(Buffer.concat([data[2] as Buffer, Buffer.alloc(1)]))], 2, /./, 'one byte over')
  await fails([Buffer.alloc(512), good], 0, /./, 'zeros')
  await fails([good, (streams[1] as Buffer).subarray(0, 100)], 1, /instead of 65536/, 'a stream cut short')
})

t.test('zstd: qemu-like frames', async (t) => {
  const data = clusterData(2)
  const out = Buffer.alloc(CLUSTER)
  zstdDecompressCluster(zstd(data), out)
  t.ok(out.equals(data), 'one frame with its size')
  out.fill(0)
  zstdDecompressCluster(Buffer.concat([zstd(data), randomBytes(400)]), out)
  t.ok(out.equals(data), 'trailing bytes ignored')
  out.fill(0)
  zstdDecompressCluster(Buffer.concat([zstd(data.subarray(0, 1000)), zstd(data.subarray(1000, 40000)), zstd(data.subarray(40000))]), out)
  t.ok(out.equals(data), 'several frames')
  out.fill(0)
  zstdDecompressCluster(zstd(data, ['--no-check']), out)
  t.ok(out.equals(data), 'without checksum')
})

t.test('zstd: frames without a content size, skippable frames, raw and RLE blocks', async (t) => {
  const data = clusterData(3)
  const out = Buffer.alloc(CLUSTER)
  const streamed = zstd(data, ['--no-content-size'])
  t.equal(streamed[4]! >> 6, 0, 'no content size in the frame header')
  zstdDecompressCluster(streamed, out)
  t.ok(out.equals(data), 'streamed frame')
  out.fill(0)
  const skippable = Buffer.alloc(8 + 5)
  skippable.writeUInt32LE(0x184d2a53, 0)
  skippable.writeUInt32LE(5, 4)
  zstdDecompressCluster(Buffer.concat([skippable, zstd(data)]), out)
  t.ok(out.equals(data), 'a skippable frame first')
  out.fill(0)
  // Hand-made: frame header (single segment, 4-byte content size), one raw block then one RLE block.
  const header = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0, 0, 1, 0])
  const rawBlock = Buffer.alloc(3 + 32768)
  rawBlock.writeUIntLE((32768 << 3) | (0 << 1) | 0, 0, 3)
  data.copy(rawBlock, 3, 0, 32768)
  const rleBlock = Buffer.from([0, 0, 0, 0x5a])
  rleBlock.writeUIntLE((32768 << 3) | (1 << 1) | 1, 0, 3)
  zstdDecompressCluster(Buffer.concat([header, rawBlock, rleBlock]), out)
  t.ok(out.subarray(0, 32768).equals(data.subarray(0, 32768)) && out.subarray(32768).every((b) => b === 0x5a), 'raw and RLE blocks')
})

t.test('zstd: refusals', async (t) => {
  const data = clusterData(4)
  const out = Buffer.alloc(CLUSTER)
  const frame = zstd(data)
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['nothing', Buffer.alloc(0), /ended after 0 of 65536/],
    ['zeros', Buffer.alloc(600), /no zstd frame magic/],
    ['a cluster short', zstd(data.subarray(1)), /ended after 65535 of 65536/],
    ['a frame larger than the cluster', zstd(Buffer.concat([data, data.subarray(0, 1)])), /overflows the cluster/],
    ['a streamed frame larger than the cluster', zstd(Buffer.concat([data, data.subarray(0, 1)]), ['--no-content-size']), /overflows the cluster/],
    ['a truncated frame', frame.subarray(0, frame.length - 10), /truncated/],
    ['a truncated header', frame.subarray(0, 5), /truncated/],
    ['the reserved header bit', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x08, 0, 0, 0]), /reserved bit/],
    ['a dictionary', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x01, 0x50, 7, 0, 0, 0, 0]), /needs a dictionary/],
    ['a 1 GiB window', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 20 << 3, 1, 0, 0]), /window of 1073741824 bytes/],
    ['a reserved block type', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0xff, 7, 0, 0]), /reserved block type/],
    // Single segment, content size 16 (so a 16-byte window), then an RLE block of 17 bytes.
    ['a block larger than the window', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x10, (17 << 3) | 3, 0, 0, 0xaa]), /block of 17 bytes in a 16-byte window/],
    ['a skippable frame past the end', Buffer.from([0x50, 0x2a, 0x4d, 0x18, 0xff, 0xff, 0xff, 0xff]), /ended after 0/],
  ]
  // Not single segment, 1 KiB window, then RLE blocks of 1 KiB: first with a declared size of 0,
  // then with no size and a thousand blocks (1 MiB from 4 KiB of input), stopped at the cluster.
  const rle = Buffer.from([0, 0, 0, 0x77])
  rle.writeUIntLE((1024 << 3) | (1 << 1), 0, 3)
  const lastRle = Buffer.from(rle)
  lastRle[0]! |= 1
  const emptyFrame = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x80, 0x00, 0, 0, 0, 0])
  cases.push(['a declared size of 0 with data', Buffer.concat([emptyFrame, lastRle]), /overflows the cluster/])
  const frameHeader = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00])
  cases.push(['a thousand RLE blocks', Buffer.concat([frameHeader, ...Array.from({ length: 999 }, () => rle), lastRle]), /overflows the cluster/])
  for (const [name, input, message] of cases) t.throws(() => { zstdDecompressCluster(input, out) }, message, name)
  const small = Buffer.alloc(16)
  zstdDecompressCluster(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x10, (16 << 3) | 3, 0, 0, 0xaa]), small)
  t.ok(small.every((b) => b === 0xaa), 'an RLE block of the window\'s size is fine')
})

t.test('the pool decodes many clusters per request, on threads', async (t) => {
  const pool = new DecompressPool(2)
  t.teardown(async () => { await pool.close() })
  const clusters = [clusterData(10), clusterData(11), clusterData(12)]
  const deflated = await pool.decompress('deflate', clusters.map((c) => deflateRawSync(c, { windowBits: 12 })), CLUSTER)
  t.ok(deflated.equals(Buffer.concat(clusters)), 'deflate')
  const zstded = await pool.decompress('zstd', clusters.map((c) => zstd(c)), CLUSTER)
  t.ok(zstded.equals(Buffer.concat(clusters)), 'zstd')
  const failed = await pool.decompress('zstd', [zstd(clusters[0]!), Buffer.alloc(100), zstd(clusters[2]!)], CLUSTER).then(() => undefined, (e: unknown) => e)
  t.ok(failed instanceof ClusterDecodeError, 'a ClusterDecodeError')
  t.equal((failed as ClusterDecodeError).index, 1, 'naming the cluster')
  const both = await Promise.all([0, 1, 2, 3].map(async (i) => await pool.decompress('deflate', [deflateRawSync(clusters[i % 3]!)], CLUSTER)))
  t.ok(both.every((out, i) => out.equals(clusters[i % 3]!)), 'concurrent requests')
  await pool.close()
  const again = await pool.decompress('deflate', [deflateRawSync(clusters[0]!)], CLUSTER)
  t.ok(again.equals(clusters[0]!), 'threads start again after close')
  const cut = t.rejects(
    pool.decompress('zstd', Array.from({ length: 64 }, () => zstd(clusters[0]!)), CLUSTER),
    /exited/,
    'a thread stopped under a request fails it',
  )
  await pool.close()
  await cut
  const after = await pool.decompress('zstd', [zstd(clusters[2]!)], CLUSTER)
  t.ok(after.equals(clusters[2]!), 'and the next request gets a new thread')
  const direct = Buffer.alloc(CLUSTER)
  decompressCluster('zstd', zstd(clusters[1]!), direct)
  t.ok(direct.equals(clusters[1]!), 'decompressCluster picks the codec')
})
