import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HEAD_BYTES } from '../../../../agent/disk/boot-area.js'
import { openQcow2 } from '../../../../agent/image/qcow2/index.js'
import { Qcow2StreamWriter } from '../../../../agent/image/qcow2/stream-writer.js'
import { zeroUnbacked } from '../../../../agent/image/qcow2/write-qcow2.js'
import { SparseSource } from '../../../../agent/image/sparse-source.js'
import { tempDir } from '../../../helpers/disk-files.js'
import { qcow2Cases, type Fixture } from '../../../helpers/qcow2-cases.js'
import { buildSharedL2Qcow2 } from '../../../helpers/hostile-qcow2.js'
import { memoryImageOf, MemoryTarget, MiB, qemuRaw } from '../../../helpers/qcow2-fixtures.js'

/**
 * Every layout of the qcow2 matrix, streamed once from start to end into a target full of 0xa5
 * (its first MiB zeroed, as the install's head starts), then its unbacked ranges made zero: the
 * target must equal `qemu-img convert -O raw`. Each file goes in whole 2 MiB pieces and in odd
 * ones (compressed clusters and data runs then span pieces), with its tables fetched first (the
 * Range way: nothing may be kept) and read from the stream (kept bytes, if any, within the limit).
 */

const dir = tempDir('byoi-qcow2-stream-')
t.teardown(dir.remove)
const { cases, build } = qcow2Cases(dir.path)
const FILL = 0xa5
const PIECES = [2 * MiB, 65536 + 512 + 3]

/** The header's cluster, the L1 table and every L2 table: what the Range way fetches first. */
async function fetchedTables (bytes: Buffer): Promise<SparseSource> {
  const image = await openQcow2(memoryImageOf(bytes))
  const tables = new SparseSource(bytes.length)
  const add = (offset: number, length: number): void => { tables.add(offset, bytes.subarray(offset, offset + length)) }
  add(0, image.clusterBytes)
  add(bytes.readUInt32BE(44) + bytes.readUInt32BE(40) * 2 ** 32, bytes.readUInt32BE(36) * 8)
  for (const l2 of image.l2TableOffsets) if (l2 !== 0) add(l2, image.clusterBytes)
  return tables
}

interface Streamed {
  target: MemoryTarget
  heldPeakBytes: number
  released: number
  pieces: number
}

async function stream (bytes: Buffer, options: { pieceBytes: number; fetched?: SparseSource; holdLimitBytes?: number; guestBytes: number }): Promise<Streamed> {
  const target = new MemoryTarget(options.guestBytes, FILL)
  target.bytes.fill(0, 0, Math.min(HEAD_BYTES, target.sizeBytes))
  const writer = new Qcow2StreamWriter(target, { fileBytes: bytes.length, fetched: options.fetched, holdLimitBytes: options.holdLimitBytes ?? bytes.length })
  let released = 0
  let pieces = 0
  await writer.start()
  try {
    for (let at = 0; at < bytes.length; at += options.pieceBytes) {
      // A piece of shared memory the writer must not keep: it is let go of once its writes landed.
      const data = Buffer.from(bytes.subarray(at, at + options.pieceBytes))
      pieces++
      await writer.take({ data, offset: at, release: () => { released++ } })
    }
    const image = await writer.end()
    await zeroUnbacked(image, writer.tables, target)
  } catch (err) {
    await writer.settle()
    throw err
  }
  return { target, heldPeakBytes: writer.heldPeakBytes, released, pieces }
}

for (const [name, fixture] of Object.entries(cases)) {
  t.test(name, async (t) => {
    const file = build(fixture)
    const raw = qemuRaw(file)
    const bytes = readFileSync(file)
    for (const pieceBytes of PIECES) {
      const fetched = await stream(bytes, { pieceBytes, fetched: await fetchedTables(bytes), guestBytes: raw.length })
      t.ok(fetched.target.bytes.equals(raw), `tables fetched first, ${pieceBytes}-byte pieces: equals qemu-img convert -O raw`)
      t.equal(fetched.heldPeakBytes, 0, 'nothing kept when the map is whole first')
      t.equal(fetched.released, fetched.pieces, 'every piece let go of')
      t.equal(fetched.target.outOfBounds, 0)
      const read = await stream(bytes, { pieceBytes, guestBytes: raw.length })
      t.ok(read.target.bytes.equals(raw), `tables read from the stream, ${pieceBytes}-byte pieces: equals qemu-img convert -O raw`)
      t.equal(read.released, read.pieces, 'every piece let go of')
      t.comment(`${name}: ${bytes.length} bytes, ${read.heldPeakBytes} kept at most from the stream`)
    }
  })
}

t.test('tables in order (qemu-img convert): nearly nothing kept from the stream', async (t) => {
  const file = build({ sizeBytes: 64 * MiB, convert: { options: ['cluster_size=64k'] } })
  const bytes = readFileSync(file)
  const { heldPeakBytes } = await stream(bytes, { pieceBytes: 2 * MiB, guestBytes: 64 * MiB })
  t.ok(heldPeakBytes <= 256 * 1024, `${heldPeakBytes} bytes kept (the refcount table and blocks)`)
})

t.test('tables after their data, over the hold limit: QCOW2_TOO_BIG, nothing past the limit kept', async (t) => {
  const file = build(cases['the L1 table moved after the data (the image grown)'] as Fixture)
  const bytes = readFileSync(file)
  const raw = qemuRaw(file)
  await t.rejects(stream(bytes, { pieceBytes: 2 * MiB, guestBytes: raw.length, holdLimitBytes: MiB }), { code: 'QCOW2_TOO_BIG' })
  const { heldPeakBytes, target } = await stream(bytes, { pieceBytes: 2 * MiB, guestBytes: raw.length })
  t.ok(heldPeakBytes > MiB, `${heldPeakBytes} bytes kept before the L1 table`)
  t.ok(target.bytes.equals(raw))
})

t.test('a table that differs in the stream from the one fetched first: the file changed', async (t) => {
  const file = build({ sizeBytes: 16 * MiB })
  const bytes = readFileSync(file)
  const fetched = await fetchedTables(bytes)
  const image = await openQcow2(memoryImageOf(bytes))
  const l2 = image.l2TableOffsets.find((offset) => offset !== 0) ?? 0
  const changed = Buffer.from(bytes)
  changed[l2 + 9] = (changed[l2 + 9] ?? 0) ^ 0x02
  const target = new MemoryTarget(16 * MiB, FILL)
  const writer = new Qcow2StreamWriter(target, {
    fileBytes: changed.length, fetched, holdLimitBytes: 0, changed: (reason) => new Error(`changed: ${reason}`),
  })
  await writer.start()
  const piece = { data: changed.subarray(0, 2 * MiB), offset: 0, release: () => {} }
  await t.rejects(writer.take(piece), { message: `changed: its byte ${l2 + 9} is not the one read first` })
  await writer.settle()
  t.equal(target.writes.length, 0, 'nothing of that piece written')
})

t.test('a damaged L2 entry met in the stream: QCOW2_DAMAGED before any of its data is written', async (t) => {
  const file = build({ sizeBytes: 16 * MiB, convert: { options: ['cluster_size=64k'] } })
  const bytes = Buffer.from(readFileSync(file))
  const image = await openQcow2(memoryImageOf(bytes))
  const l2 = image.l2TableOffsets.find((offset) => offset !== 0) ?? 0
  bytes.writeUInt32BE(0x00ff0000, l2) // the first entry's cluster far past the end of the file
  const target = new MemoryTarget(16 * MiB, FILL)
  const writer = new Qcow2StreamWriter(target, { fileBytes: bytes.length, holdLimitBytes: bytes.length })
  await writer.start()
  const err = await (async () => {
    for (let at = 0; at < bytes.length; at += 2 * MiB) await writer.take({ data: bytes.subarray(at, at + 2 * MiB), offset: at, release: () => {} })
  })().then(() => undefined, (e: unknown) => e)
  await writer.settle()
  t.match(err, { code: 'QCOW2_DAMAGED' })
  t.equal(target.writes.length, 0, 'nothing written')
})

t.test('a file shorter than announced, and one longer: QCOW2_DAMAGED', async (t) => {
  const file = build({ sizeBytes: 16 * MiB })
  const bytes = readFileSync(file)
  const short = new Qcow2StreamWriter(new MemoryTarget(16 * MiB), { fileBytes: bytes.length + 512, holdLimitBytes: bytes.length })
  await short.start()
  await short.take({ data: bytes, offset: 0, release: () => {} })
  await t.rejects(short.end(), { code: 'QCOW2_DAMAGED', message: /./ })
  const long = new Qcow2StreamWriter(new MemoryTarget(16 * MiB), { fileBytes: bytes.length - 512, holdLimitBytes: bytes.length })
  await long.start()
  await t.rejects(long.take({ data: bytes, offset: 0, release: () => {} }), { code: 'QCOW2_DAMAGED' })
  await long.settle()
})

t.test('the header checks run before any write: onHeader sees the virtual size first', async (t) => {
  const file = build({ sizeBytes: 16 * MiB })
  const bytes = readFileSync(file)
  const target = new MemoryTarget(16 * MiB)
  const writer = new Qcow2StreamWriter(target, {
    fileBytes: bytes.length,
    holdLimitBytes: bytes.length,
    onHeader: (header) => { if (header.virtualSizeBytes > 8 * MiB) throw new Error('too big for the disk') },
  })
  await writer.start()
  await t.rejects(writer.take({ data: bytes.subarray(0, 2 * MiB), offset: 0, release: () => {} }), /too big for the disk/)
  await writer.settle()
  t.equal(target.writes.length, 0)
})

t.test('one host cluster named by 4096 guest clusters: installed as qemu-img does; over the map\'s limit, QCOW2_TOO_BIG', async (t) => {
  const same = Buffer.alloc(512, 0x5a)
  const clusters = new Map(Array.from({ length: 4096 }, (_, i) => [i * 3, same] as [number, Buffer]))
  const bytes = buildSharedL2Qcow2(8 * MiB, clusters)
  const file = join(dir.path, 'shared.qcow2')
  writeFileSync(file, bytes)
  const raw = qemuRaw(file)
  for (const fetched of [await fetchedTables(bytes), undefined]) {
    const { target } = await stream(bytes, { pieceBytes: 65536, fetched, guestBytes: raw.length })
    t.ok(target.bytes.equals(raw), `${fetched === undefined ? 'from the stream' : 'tables first'}: equals qemu-img convert -O raw`)
  }
  const tables = await fetchedTables(bytes)
  const writer = new Qcow2StreamWriter(new MemoryTarget(raw.length), { fileBytes: bytes.length, fetched: tables, holdLimitBytes: 0, mapLimitBytes: 32 * 1000 })
  await t.rejects(writer.start(), { code: 'QCOW2_TOO_BIG' }, '4096 extents to come, room for 1000')
})
