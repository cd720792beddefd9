import { randomBytes } from 'node:crypto'
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import t from 'tap'
import { ClusterBitmap } from '../../../../agent/image/cluster-bitmap.js'
import { openQcow2, readQcow2Guest } from '../../../../agent/image/qcow2/index.js'
import { Qcow2Layout, qcow2Stream } from '../../../../agent/image/qcow2/layout-qcow2.js'
import { tempDir } from '../../../helpers/disk-files.js'
import { loadSource, MiB, qemuImg } from '../../../helpers/qcow2-fixtures.js'

/**
 * A qcow2 laid out from a bitmap of data clusters and written front to back: qemu-img must find it
 * clean (`check`: refcounts, offsets, COPIED flags) and equal to the raw disk it came from
 * (`compare`), and our own reader must open it.
 */

/** A raw disk with data in `dataClusters` (random bytes), zeros elsewhere, and the bitmap of those clusters. */
function disk (sizeBytes: number, clusterBits: number, dataClusters: number[]): { raw: Buffer; bitmap: ClusterBitmap } {
  const clusterBytes = 2 ** clusterBits
  const raw = Buffer.alloc(sizeBytes)
  const bitmap = new ClusterBitmap(Math.ceil(sizeBytes / clusterBytes))
  for (const cluster of dataClusters) {
    const start = cluster * clusterBytes
    randomBytes(Math.min(clusterBytes, sizeBytes - start)).copy(raw, start)
    bitmap.set(cluster)
  }
  return { raw, bitmap }
}

async function writeLayout (file: string, layout: Qcow2Layout, raw: Buffer): Promise<void> {
  const read = async (guest: number): Promise<Buffer> => {
    const cluster = Buffer.alloc(layout.clusterBytes)
    raw.copy(cluster, 0, guest * layout.clusterBytes, Math.min((guest + 1) * layout.clusterBytes, raw.length))
    return cluster
  }
  await pipeline(Readable.from(qcow2Stream(layout, read)), createWriteStream(file))
}

const cases: Array<{ name: string; sizeBytes: number; clusterBits: number; data: (clusters: number) => number[] }> = [
  {
    name: '64 KiB clusters, a few data clusters, the last one partly past the size',
    sizeBytes: 4 * MiB + 512,
    clusterBits: 16,
    data: (n) => [0, 3, 17, n - 1],
  },
  {
    // 4 KiB clusters: an L2 table covers 2 MiB, a refcount block 8 MiB of file, so both come many times.
    name: '4 KiB clusters: many L2 tables, several refcount blocks, ranges with no data',
    sizeBytes: 64 * MiB,
    clusterBits: 12,
    data: (n) => Array.from({ length: n }, (_, i) => i).filter((i) => (i * 2654435761) % 7 === 0 && Math.floor(i / 512) % 5 !== 2),
  },
  { name: 'no data at all: zeros', sizeBytes: 8 * MiB, clusterBits: 16, data: () => [] },
  { name: 'every cluster data', sizeBytes: 2 * MiB, clusterBits: 12, data: (n) => Array.from({ length: n }, (_, i) => i) },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const dir = tempDir()
    t.teardown(dir.remove)
    const clusters = Math.ceil(c.sizeBytes / 2 ** c.clusterBits)
    const { raw, bitmap } = disk(c.sizeBytes, c.clusterBits, c.data(clusters))
    const layout = new Qcow2Layout(c.sizeBytes, bitmap, c.clusterBits)
    const rawFile = join(dir.path, 'disk.raw')
    const qcow2File = join(dir.path, 'disk.qcow2')
    writeFileSync(rawFile, raw)
    await writeLayout(qcow2File, layout, raw)
    t.equal(readFileSync(qcow2File).length, layout.fileBytes, 'the file is as long as laid out')
    t.equal(layout.dataClusters, bitmap.count, 'one host cluster per data cluster')
    const check = JSON.parse(qemuImg(['check', '--output=json', '-f', 'qcow2', qcow2File])) as Record<string, unknown>
    t.match(check, { 'check-errors': 0 }, 'qemu-img check: no errors')
    t.notOk('leaks' in check || 'corruptions' in check, 'no leaks, no corruptions')
    t.equal(check['allocated-clusters'] ?? 0, bitmap.count, 'qemu-img counts the data clusters (no field when none)')
    qemuImg(['compare', '-q', '-f', 'raw', '-F', 'qcow2', rawFile, qcow2File]) // throws on a difference
    t.pass('qemu-img compare: equal to the raw disk')
    const info = JSON.parse(qemuImg(['info', '--output=json', qcow2File])) as { 'virtual-size': number; 'cluster-size': number }
    t.match(info, { 'virtual-size': c.sizeBytes, 'cluster-size': 2 ** c.clusterBits })
    const source = loadSource(qcow2File)
    const opened = await openQcow2(source)
    t.match(opened, { version: 3, virtualSizeBytes: c.sizeBytes, clusterBits: c.clusterBits, dirty: false }, 'our reader opens it')
    t.ok(readQcow2Guest(opened, source, 0, c.sizeBytes).equals(raw), 'and reads the guest back')
  })
}

t.test('a bitmap of the wrong size, a size not a multiple of 512: RangeError', async (t) => {
  t.throws(() => new Qcow2Layout(MiB, new ClusterBitmap(15)), RangeError)
  t.throws(() => new Qcow2Layout(MiB + 1, new ClusterBitmap(17)), RangeError)
  t.throws(() => new Qcow2Layout(MiB, new ClusterBitmap(16), 8), RangeError)
})

t.test('ClusterBitmap: set, has, counts, iteration in order', async (t) => {
  const bitmap = new ClusterBitmap(100)
  for (const cluster of [99, 3, 8, 9, 3, 64]) bitmap.set(cluster)
  t.equal(bitmap.count, 5, 'a cluster set twice counts once')
  t.same([...bitmap], [3, 8, 9, 64, 99])
  t.equal(bitmap.countIn(0, 100), 5)
  t.equal(bitmap.countIn(4, 64), 2)
  t.equal(bitmap.countIn(8, 16), 2, 'a whole byte')
  t.ok(bitmap.has(64))
  t.notOk(bitmap.has(65))
  t.throws(() => { bitmap.set(100) }, RangeError)
})
