import { randomBytes } from 'node:crypto'
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { ClusterBitmap } from '../../../../agent/image/cluster-bitmap.js'
import { compressCluster } from '../../../../agent/image/qcow2/compress-cluster.js'
import { CompressedSizes } from '../../../../agent/image/qcow2/compressed-sizes.js'
import type { CompressionType } from '../../../../agent/image/qcow2/decompress.js'
import { openQcow2, readQcow2Guest } from '../../../../agent/image/qcow2/index.js'
import { ClusterSizeChangedError, type CompressClusters, Qcow2Layout, qcow2Stream, type ReadClusterInto } from '../../../../agent/image/qcow2/layout-qcow2.js'
import { tempDir } from '../../../helpers/disk-files.js'
import { loadSource, MiB, qemuImg } from '../../../helpers/qcow2-fixtures.js'

/**
 * A qcow2 laid out with compressed clusters (their sizes measured first) and written front to
 * back: qemu-img must find it clean (`check` counts every compressed cluster in the refcounts of
 * the host clusters it touches), equal to the raw disk (`compare`), of the compression type asked
 * (`info`); our reader must read it back. The descriptors and refcounts are checked by hand too.
 */

type Kind = 'text' | 'random' | 'zero' | 'half'

/** A cluster's bytes by kind: text compresses well, random not at all, half is half of each. */
function clusterOf (kind: Kind, clusterBytes: number, seed: number): Buffer {
  if (kind === 'zero') return Buffer.alloc(clusterBytes)
  if (kind === 'random') return randomBytes(clusterBytes)
  const line = `line ${seed}: the quick brown fox ${seed * 7919} jumps over the lazy dog\n`
  const text = Buffer.from(line.repeat(Math.ceil(clusterBytes / 40))).subarray(0, clusterBytes)
  if (kind === 'half') randomBytes(clusterBytes / 2).copy(text)
  return text
}

interface Disk { raw: Buffer; bitmap: ClusterBitmap; sizes: CompressedSizes }

/** A raw disk of `kinds(i)` clusters, its bitmap (the non-zero ones) and their measured sizes. */
function disk (type: CompressionType, sizeBytes: number, clusterBits: number, kinds: (i: number) => Kind): Disk {
  const clusterBytes = 2 ** clusterBits
  const clusters = Math.ceil(sizeBytes / clusterBytes)
  const raw = Buffer.alloc(sizeBytes)
  const bitmap = new ClusterBitmap(clusters)
  const sizes = new CompressedSizes(type, clusterBits)
  for (let i = 0; i < clusters; i++) {
    const kind = kinds(i)
    if (kind === 'zero') continue
    const bytes = clusterOf(kind, clusterBytes, i)
    const start = i * clusterBytes
    bytes.copy(raw, start, 0, Math.min(clusterBytes, sizeBytes - start))
    const padded = Buffer.alloc(clusterBytes)
    raw.copy(padded, 0, start, Math.min(start + clusterBytes, sizeBytes))
    bitmap.set(i)
    sizes.record(bitmap.count - 1, compressCluster(type, padded).length)
  }
  return { raw, bitmap, sizes }
}

function reader (layout: Qcow2Layout, raw: Buffer): (guest: number) => Promise<Buffer> {
  return async (guest) => {
    const cluster = Buffer.alloc(layout.clusterBytes)
    raw.copy(cluster, 0, guest * layout.clusterBytes, Math.min((guest + 1) * layout.clusterBytes, raw.length))
    return cluster
  }
}

/** Both passes' compressor, on this thread, and the reads into its batches. */
function compressSync (type: CompressionType, layout: Qcow2Layout, raw: Buffer): { compress: CompressClusters; readInto: ReadClusterInto } {
  const read = reader(layout, raw)
  return {
    compress: async (batch) => {
      const streams: Uint8Array[] = []
      for (let at = 0; at < batch.length; at += layout.clusterBytes) {
        streams.push(Uint8Array.from(compressCluster(type, batch.subarray(at, at + layout.clusterBytes))))
      }
      return streams
    },
    readInto: async (guest, into) => { (await read(guest)).copy(into) },
  }
}

async function writeLayout (file: string, layout: Qcow2Layout, raw: Buffer): Promise<void> {
  const type = layout.compression?.type ?? 'zstd'
  await pipeline(Readable.from(qcow2Stream(layout, reader(layout, raw), compressSync(type, layout, raw))), createWriteStream(file))
}

const mixed = (i: number): Kind => (['text', 'random', 'zero', 'text', 'half', 'text', 'zero', 'random'] as const)[(i * 5 + (i >> 4)) % 8] as Kind

const cases: Array<{ name: string; type: CompressionType; sizeBytes: number; clusterBits: number; kinds: (i: number) => Kind }> = [
  { name: 'zstd, 64 KiB clusters, mixed, the last cluster partly past the size', type: 'zstd', sizeBytes: 8 * MiB + 512, clusterBits: 16, kinds: mixed },
  {
    name: 'zstd, 4 KiB clusters: many L2 tables and refcount blocks, ranges without data',
    type: 'zstd',
    sizeBytes: 48 * MiB,
    clusterBits: 12,
    kinds: (i) => Math.floor(i / 512) % 5 === 2 ? 'zero' : mixed(i),
  },
  { name: 'deflate, 64 KiB clusters, mixed', type: 'deflate', sizeBytes: 8 * MiB, clusterBits: 16, kinds: mixed },
  { name: 'deflate, 4 KiB clusters, all text', type: 'deflate', sizeBytes: 4 * MiB, clusterBits: 12, kinds: () => 'text' },
  { name: 'zstd, 512-byte clusters (a 1-bit sector count)', type: 'zstd', sizeBytes: MiB, clusterBits: 9, kinds: mixed },
  { name: 'zstd, 2 MiB clusters (a 13-bit sector count)', type: 'zstd', sizeBytes: 24 * MiB, clusterBits: 21, kinds: mixed },
  { name: 'zstd, nothing compresses: the plain run only', type: 'zstd', sizeBytes: 2 * MiB, clusterBits: 16, kinds: (i) => i % 3 === 0 ? 'random' : 'zero' },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const dir = tempDir()
    t.teardown(dir.remove)
    const { raw, bitmap, sizes } = disk(c.type, c.sizeBytes, c.clusterBits, c.kinds)
    const layout = new Qcow2Layout(c.sizeBytes, bitmap, c.clusterBits, sizes)
    const rawFile = join(dir.path, 'disk.raw')
    const qcow2File = join(dir.path, 'disk.qcow2')
    writeFileSync(rawFile, raw)
    await writeLayout(qcow2File, layout, raw)
    t.equal(readFileSync(qcow2File).length, layout.fileBytes, 'the file is as long as laid out')
    t.equal(layout.fileBytes % 512, 0, 'a whole number of sectors')
    t.equal(layout.plainClusters + layout.compressedClusters, bitmap.count, 'every data cluster, plain or compressed')
    const check = JSON.parse(qemuImg(['check', '--output=json', '-f', 'qcow2', qcow2File])) as Record<string, unknown>
    t.match(check, { 'check-errors': 0 }, 'qemu-img check: no errors')
    t.notOk('leaks' in check || 'corruptions' in check, 'no leaks, no corruptions')
    t.equal(check['compressed-clusters'] ?? 0, layout.compressedClusters, 'qemu-img counts the compressed clusters')
    qemuImg(['compare', '-q', '-f', 'raw', '-F', 'qcow2', rawFile, qcow2File]) // throws on a difference
    t.pass('qemu-img compare: equal to the raw disk')
    const info = JSON.parse(qemuImg(['info', '--output=json', qcow2File])) as { 'format-specific': { data: Record<string, unknown> } }
    t.match(info['format-specific'].data, { 'compression-type': c.type === 'zstd' ? 'zstd' : 'zlib' }, 'qemu-img info: the compression type')
    const back = join(dir.path, 'back.raw')
    qemuImg(['convert', '-f', 'qcow2', '-O', 'raw', qcow2File, back])
    t.ok(readFileSync(back).equals(raw), 'qemu-img convert to raw: the disk byte for byte')
    const source = loadSource(qcow2File)
    const opened = await openQcow2(source)
    t.match(opened, { version: 3, virtualSizeBytes: c.sizeBytes, clusterBits: c.clusterBits }, 'our reader opens it')
    t.ok(readQcow2Guest(opened, source, 0, c.sizeBytes).equals(raw), 'and reads the guest back')
  })
}

t.test('zstd header: length 112, compression_type 1, incompatible bit 3; deflate: type 0, no bit', async (t) => {
  for (const type of ['zstd', 'deflate'] as const) {
    const { bitmap, sizes } = disk(type, MiB, 16, () => 'text')
    const header = new Qcow2Layout(MiB, bitmap, 16, sizes).metadataCluster(0)
    t.equal(header.readUInt32BE(100), 112, `${type}: header_length`)
    t.equal(header.readUInt8(104), type === 'zstd' ? 1 : 0, `${type}: compression_type`)
    t.equal(header.readBigUInt64BE(72), type === 'zstd' ? 8n : 0n, `${type}: incompatible_features`)
  }
  const plain = new Qcow2Layout(MiB, disk('zstd', MiB, 16, () => 'text').bitmap, 16).metadataCluster(0)
  t.equal(plain.readUInt32BE(100), 104, 'uncompressed: header_length 104 as before')
})

t.test('descriptors and refcounts by hand: 4 KiB clusters, compressed clusters packed across host clusters', async (t) => {
  // 4 KiB clusters: exact sizes, x = 62 − 4 = 58, a 4-bit sector count.
  const clusterBits = 12
  const clusters = 8
  const bitmap = new ClusterBitmap(clusters)
  const sizes = new CompressedSizes('zstd', clusterBits)
  const lengths = [1000, 3000, 0, 2500, 17] // 0: cluster 2 stored plain (4096 does not shrink)
  lengths.forEach((length, i) => {
    bitmap.set(i)
    sizes.record(i, length === 0 ? 4096 : length)
  })
  t.equal(sizes.unitsOf(2), 0, 'a cluster that does not shrink is stored plain')
  t.equal(sizes.storedBytes(0), 1000, 'exact sizes')
  const layout = new Qcow2Layout(clusters * 4096, bitmap, clusterBits, sizes)
  // header, L1, refcount table, 1 refcount block, 1 L2 table: 5 metadata clusters; then cluster 2 plain; then the compressed run.
  t.equal(layout.metadataClusters, 5)
  t.equal(layout.plainClusters, 1)
  t.equal(layout.compressedClusters, 4)
  const storedBytes = 1000 + 3000 + 2500 + 17
  t.equal(layout.compressedBytes, storedBytes)
  const run = 6 * 4096
  t.equal(layout.fileBytes, run + Math.ceil(storedBytes / 512) * 512, 'ends at the sector after the last compressed byte')
  const l2 = layout.metadataCluster(4)
  const entry = (i: number): bigint => l2.readBigUInt64BE(i * 8)
  const x = 58n
  const descriptor = (offset: number, sectors: number): bigint => (1n << 62n) | (BigInt(sectors - 1) << x) | BigInt(offset)
  t.equal(entry(0), descriptor(run, 2), 'cluster 0: at the run\'s start, 1008 bytes over 2 sectors')
  t.equal(entry(1), descriptor(run + 1000, 7), 'cluster 1: 3000 bytes from 1000: sectors 1..7')
  t.equal(entry(2), (1n << 63n) | BigInt(5 * 4096), 'cluster 2: plain, COPIED, after the metadata')
  t.equal(entry(3), descriptor(run + 4000, 6), 'cluster 3: 2500 bytes from 4000 (across the host cluster boundary): sectors 7..12')
  t.equal(entry(4), descriptor(run + 6500, 1), 'cluster 4: 17 bytes in sector 12')
  t.equal(entry(5), 0n, 'cluster 5: no data')
  const refcounts = layout.metadataCluster(3)
  const refcount = (host: number): number => refcounts.readUInt16BE(host * 2)
  t.same([0, 1, 2, 3, 4, 5].map(refcount), [1, 1, 1, 1, 1, 1], 'metadata and the plain cluster: 1')
  t.equal(refcount(6), 3, 'host cluster 6: clusters 0, 1 and 3 touch it')
  t.equal(refcount(7), 2, 'host cluster 7: clusters 3 and 4')
  t.equal(refcount(8), 0, 'past the end: 0')
})

t.test('the second pass: a cluster that compresses to another size fails the stream before its bytes', async (t) => {
  const { raw, bitmap, sizes } = disk('zstd', 2 * MiB, 16, (i) => i < 3 ? 'text' : 'zero')
  const layout = new Qcow2Layout(2 * MiB, bitmap, 16, sizes)
  const changed = Buffer.from(raw)
  randomBytes(1000).copy(changed, 65536 + 100) // cluster 1 now compresses worse
  const chunks: Buffer[] = []
  const err = await (async () => {
    for await (const chunk of qcow2Stream(layout, reader(layout, changed), compressSync('zstd', layout, changed))) chunks.push(chunk)
  })().then(() => undefined, (e: unknown) => e)
  t.type(err, ClusterSizeChangedError)
  t.match(err, { guestCluster: 1, plannedBytes: sizes.storedBytes(1) })
  const sent = chunks.reduce((sum, chunk) => sum + chunk.length, 0)
  t.ok(sent <= layout.metadataClusters * layout.clusterBytes, 'nothing of the compressed run was sent')
})

t.test('CompressedSizes: units, the threshold, ranges, chunks', async (t) => {
  const sizes = new CompressedSizes('zstd', 16)
  t.equal(sizes.unitBytes, 1, '64 KiB clusters: exact sizes')
  t.equal(sizes.unitsFor(65535), 65535, 'the largest compressed size')
  t.equal(sizes.unitsFor(65536), 0, 'a cluster: stored plain')
  t.throws(() => sizes.unitsFor(0), RangeError)
  t.throws(() => { sizes.record(-1, 100) }, RangeError)
  sizes.record(3, 100)
  sizes.record(0, 200)
  t.equal(sizes.count, 4, 'recorded in any order: the highest ordinal counts')
  t.equal(sizes.storedBytes(3), 100)
  t.equal(sizes.unitsOf(1), 0, 'not recorded: 0')
  t.throws(() => sizes.unitsOf(4), RangeError)
  sizes.record(3 * 2 ** 20 + 5, 7)
  t.equal(sizes.storedBytes(3 * 2 ** 20 + 5), 7, 'past a chunk of 1 Mi sizes')
  const large = new CompressedSizes('zstd', 21)
  t.equal(large.unitBytes, 32, '2 MiB clusters: units of 32 bytes')
  t.equal(large.unitsFor(33), 2)
  t.equal(large.unitsFor(2 ** 21 - 32), 65535)
  t.equal(large.unitsFor(2 ** 21 - 31), 0, 'rounded up to a whole cluster: stored plain')
  const bitmap = new ClusterBitmap(4)
  bitmap.set(1)
  t.throws(() => new Qcow2Layout(4 * 65536, bitmap, 16, sizes), RangeError, 'sizes of another number of data clusters than the bitmap\'s')
})

t.test('the sector count field: its place and width follow cluster_bits (x = 62 − (cluster_bits − 8))', async (t) => {
  const cases = [
    { clusterBits: 9, x: 61, width: 1 },
    { clusterBits: 12, x: 58, width: 4 },
    { clusterBits: 16, x: 54, width: 8 },
    { clusterBits: 21, x: 49, width: 13 },
  ]
  for (const { clusterBits, x, width } of cases) {
    const clusterBytes = 2 ** clusterBits
    const bitmap = new ClusterBitmap(2)
    const sizes = new CompressedSizes('zstd', clusterBits)
    bitmap.set(1)
    const length = clusterBytes - 2 * sizes.unitBytes // the largest that still shrinks, nearly: the most sectors
    sizes.record(0, length)
    const layout = new Qcow2Layout(2 * clusterBytes, bitmap, clusterBits, sizes)
    const l2 = layout.metadataCluster(layout.metadataClusters - 1)
    const entry = l2.readBigUInt64BE(8)
    const offset = layout.metadataClusters * clusterBytes
    const sectors = Math.ceil(sizes.storedBytes(0) / 512)
    t.equal(entry >> 62n, 1n, `cluster_bits ${clusterBits}: compressed, not COPIED`)
    t.equal(entry & ((1n << BigInt(x)) - 1n), BigInt(offset), `cluster_bits ${clusterBits}: the offset in bits 0..${x - 1}`)
    const field = (entry >> BigInt(x)) & ((1n << BigInt(width)) - 1n)
    t.equal(field, BigInt(sectors - 1), `cluster_bits ${clusterBits}: ${sectors} sectors, less one, in ${width} bits`)
  }
})
