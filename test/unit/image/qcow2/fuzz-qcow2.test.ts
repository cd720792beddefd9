import t from 'tap'
import fc from 'fast-check'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { HEAD_BYTES } from '../../../../agent/disk/boot-area.js'
import { openQcow2, writeQcow2 } from '../../../../agent/image/qcow2/index.js'
import { guestExtents } from '../../../../agent/image/qcow2/tables.js'
import { isInstallError } from '../../../../agent/errors/install-error.js'
import { tempDir } from '../../../helpers/disk-files.js'
import { convertQcow2, createQcow2, makePatternFile, memoryImageOf, MemoryTarget, MiB, qemuIo } from '../../../helpers/qcow2-fixtures.js'

/**
 * Property-based fuzzing: valid small images with bytes of their header, L1 table, L2 tables or
 * anywhere else changed, and garbage behind a qcow2 magic, go through openQcow2 and writeQcow2
 * onto a memory target that refuses any I/O outside it. The only outcomes allowed: success, or an
 * InstallError whose code is QCOW2_* or IMAGE_* (and not a write failure: this target never
 * fails unless asked out of bounds). A hang ends in the subtest's timeout.
 */

const dir = tempDir('byoi-qcow2-fuzz-')
t.teardown(dir.remove)
const pattern = makePatternFile(dir.path, MiB)
const TARGET_BYTES = 6 * MiB // above every fixture's 4 MiB, so a grown virtual size is clipped here
const RUNS = 150 // per fixture

interface Region { name: string; start: number; length: number }

async function fixture (name: string, create: string[], writes: string[], convert?: string[]): Promise<{ bytes: Buffer; regions: Region[] }> {
  const file = join(dir.path, `${name}.qcow2`)
  createQcow2(file, 4 * MiB, create)
  qemuIo(file, writes)
  let final = file
  if (convert !== undefined) {
    final = join(dir.path, `${name}.c.qcow2`)
    convertQcow2(file, final, { compress: true, options: convert })
  }
  const bytes = readFileSync(final)
  const source = memoryImageOf(bytes)
  const image = await openQcow2(source)
  const l1Offset = Number(bytes.readBigUInt64BE(40))
  const regions: Region[] = [
    { name: 'header', start: 0, length: Math.min(image.clusterBytes, 512) },
    { name: 'L1', start: l1Offset, length: Math.max(8, image.l2TableOffsets.length * 8) },
    { name: 'file', start: 0, length: bytes.length },
  ]
  const usedL2Bytes = Math.min(image.clusterBytes, (4 * MiB / image.clusterBytes) * (image.extendedL2 ? 16 : 8))
  for (const l2 of new Set(image.l2TableOffsets)) if (l2 !== 0) regions.push({ name: `L2@${l2}`, start: l2, length: usedL2Bytes })
  // The compressed streams, for the decoders.
  const compressed = [...guestExtents(image, source, { start: 0, end: image.virtualSizeBytes }, { maxDataBytes: MiB })].filter((e) => e.kind === 'compressed')
  if (compressed.length > 0) {
    const start = Math.min(...compressed.map((e) => e.hostOffset))
    const end = Math.max(...compressed.map((e) => e.kind === 'compressed' ? e.hostOffset + e.compressedBytes : 0))
    regions.push({ name: 'compressed', start, length: Math.min(end, bytes.length) - start })
  }
  return { bytes, regions }
}

const fixtures = {
  'v3, 64 KiB clusters, plain, zero and compressed clusters': await fixture('mixed', [], [
    'write -c -P 0x41 0 128k', `write -c -s ${pattern} 1M 256k`, 'write -P 0x11 64k 4k',
    `write -s ${pattern} 2M 512k`, 'write -z 2304k 64k', 'write -P 0x12 4032k 64k',
  ]),
  'v3, extended L2': await fixture('extl2', ['extended_l2=on'], [
    'write -P 0x21 2048 2048', `write -s ${pattern} 1052672 8192`, 'write -z 1060864 2048', 'write -P 0x22 3M 64k', 'write -z 3147776 4096', 'write -z 2M 64k',
  ]),
  'v2, 512 B clusters': await fixture('v2', ['compat=0.10', 'cluster_size=512'], ['write -P 0x31 0 8k', `write -s ${pattern} 1M 64k`, 'write -P 0x32 3M 512']),
  'zstd compressed': await fixture('zstd', [], ['write -P 0x41 0 64k', `write -s ${pattern} 1M 512k`, 'write -P 0x42 3M 64k'], ['compression_type=zstd']),
}

/** Values for whole 64-bit fields: the edges of every check. */
function nastyU64 (fileBytes: number): fc.Arbitrary<bigint> {
  return fc.oneof(
    fc.constantFrom(0n, 1n, 511n, 512n, 65536n, BigInt(fileBytes), BigInt(fileBytes - 512), BigInt(fileBytes + 65536),
      2n ** 53n - 1n, 2n ** 53n, 2n ** 62n, 2n ** 63n, 2n ** 64n - 1n, (1n << 62n) | BigInt(fileBytes - 100), (1n << 63n) | 0x10000n),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  )
}

type Mutation = { kind: 'byte'; region: number; at: number; value: number } | { kind: 'u64'; region: number; at: number; value: bigint }

/** One to four changes, in the header less often than in the tables (most header changes are refused at once). */
function mutations (regions: Region[], fileBytes: number): fc.Arbitrary<Mutation[]> {
  const region = fc.oneof(
    { weight: 1, arbitrary: fc.constant(0) },
    { weight: 5, arbitrary: fc.integer({ min: 1, max: regions.length - 1 }) },
  )
  return fc.array(fc.oneof(
    fc.record({ kind: fc.constant('byte' as const), region, at: fc.nat(), value: fc.nat({ max: 255 }) }),
    fc.record({ kind: fc.constant('u64' as const), region, at: fc.nat(), value: nastyU64(fileBytes) }),
  ), { minLength: 1, maxLength: 4 })
}

function apply (original: Buffer, regions: Region[], list: Mutation[]): Buffer {
  const bytes = Buffer.from(original)
  for (const m of list) {
    const region = regions[m.region] as Region
    if (m.kind === 'byte') {
      bytes[region.start + (m.at % region.length)] = m.value
    } else {
      const at = region.start + (m.at % Math.max(1, Math.floor(region.length / 8))) * 8
      if (at + 8 <= bytes.length) bytes.writeBigUInt64BE(m.value, at)
    }
  }
  return bytes
}

/** openQcow2 then writeQcow2; throws if anything but success or an allowed refusal happens. */
async function install (bytes: Uint8Array): Promise<void> {
  const source = memoryImageOf(bytes)
  const target = new MemoryTarget(TARGET_BYTES)
  try {
    const image = await openQcow2(source)
    const head = await writeQcow2(image, source, target)
    if (head.length > HEAD_BYTES) throw new Error(`a head of ${head.length} bytes`)
  } catch (err) {
    const code = isInstallError(err) ? err.code : undefined
    if (code === undefined || !/^(QCOW2_|IMAGE_)/.test(code) || code === 'QCOW2_WRITE_FAILED') throw err
  }
  if (target.outOfBounds > 0) throw new Error(`${target.outOfBounds} I/O(s) out of bounds`)
  const low = target.writes.find((w) => w.offset < HEAD_BYTES)
  if (low !== undefined) throw new Error(`a write at ${low.offset}, inside the head`)
}

for (const [name, { bytes, regions }] of Object.entries(fixtures)) {
  t.test(`mutated: ${name}`, { timeout: 90_000 }, async (t) => {
    await install(bytes) // the fixture itself installs
    await fc.assert(fc.asyncProperty(mutations(regions, bytes.length), async (list) => {
      await install(apply(bytes, regions, list))
    }), { numRuns: RUNS })
    t.pass(`${RUNS} mutations`)
  })
}

t.test('garbage behind a qcow2 magic', { timeout: 60_000 }, async (t) => {
  const header = fc.record({
    version: fc.constantFrom(2, 3),
    clusterBits: fc.integer({ min: 9, max: 21 }),
    tail: fc.uint8Array({ maxLength: 4096 }),
  })
  await fc.assert(fc.asyncProperty(header, async ({ version, clusterBits, tail }) => {
    const bytes = Buffer.alloc(104 + tail.length)
    bytes.writeUInt32BE(0x514649fb, 0)
    bytes.writeUInt32BE(version, 4)
    Buffer.from(tail).copy(bytes, 8)
    bytes.writeUInt32BE(clusterBits, 20)
    await install(bytes)
  }), { numRuns: 300 })
  await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), async (bytes) => { await install(bytes) }), { numRuns: 100 })
  t.pass('garbage refused or installed, never a crash')
})

/**
 * Hand-made images: a sound header (cluster 0), an L1 table (cluster 1) and L2 tables (clusters 2
 * and 3) whose entries point anywhere in or past a small file, as standard, zero, compressed or
 * extended entries: the walk and the writer see every kind of entry, not just refusals.
 */
t.test('hand-made tables', { timeout: 90_000 }, async (t) => {
  const image = fc.record({
    version: fc.constantFrom(2, 3),
    clusterBits: fc.constantFrom(9, 12, 14, 16),
    extendedL2: fc.boolean(),
    zstd: fc.boolean(),
    fileClusters: fc.integer({ min: 4, max: 16 }),
    virtualClusters: fc.integer({ min: 0, max: 4096 }),
    l1: fc.array(fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 20 })), { minLength: 1, maxLength: 4 }),
    l2: fc.array(fc.record({
      kind: fc.constantFrom('standard', 'zero', 'compressed', 'raw'),
      cluster: fc.integer({ min: 0, max: 20 }),
      byte: fc.integer({ min: 0, max: 20 * 65536 }),
      sectors: fc.integer({ min: 0, max: 300 }),
      bitmap: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    }), { minLength: 1, maxLength: 64 }),
    fill: fc.nat({ max: 255 }),
  })
  await fc.assert(fc.asyncProperty(image, async (spec) => {
    const clusterBytes = 2 ** spec.clusterBits
    const extendedL2 = spec.version === 3 && spec.extendedL2
    const entryBytes = extendedL2 ? 16 : 8
    // Within what the L1 table can map, mostly (qemu's "L1 table is too small" is tested elsewhere).
    const virtualClusters = Math.min(spec.virtualClusters, spec.l1.length * (clusterBytes / entryBytes) + 1)
    const bytes = Buffer.alloc(spec.fileClusters * clusterBytes, spec.fill)
    bytes.fill(0, 0, 2 * clusterBytes)
    bytes.writeUInt32BE(0x514649fb, 0)
    bytes.writeUInt32BE(spec.version, 4)
    bytes.writeUInt32BE(spec.clusterBits, 20)
    bytes.writeBigUInt64BE(BigInt(virtualClusters * clusterBytes), 24)
    bytes.writeUInt32BE(spec.l1.length, 36)
    bytes.writeBigUInt64BE(BigInt(clusterBytes), 40) // L1 in cluster 1
    bytes.writeBigUInt64BE(BigInt(clusterBytes), 48) // refcount table: never read
    bytes.writeUInt32BE(1, 56)
    if (spec.version === 3) {
      bytes.writeBigUInt64BE((extendedL2 ? 16n : 0n) | (spec.zstd ? 8n : 0n), 72)
      bytes.writeUInt32BE(4, 96)
      bytes.writeUInt32BE(112, 100)
      bytes[104] = spec.zstd ? 1 : 0
    }
    spec.l1.forEach((cluster, i) => {
      bytes.writeBigUInt64BE(cluster < 0 ? 0n : (1n << 63n) | BigInt(cluster * clusterBytes), clusterBytes + 8 * i)
    })
    const x = 62 - (spec.clusterBits - 8)
    spec.l2.forEach((entry, i) => {
      const at = 2 * clusterBytes + i * entryBytes
      if (at + entryBytes > bytes.length) return
      let value: bigint
      if (entry.kind === 'standard') value = (1n << 63n) | BigInt(entry.cluster * clusterBytes)
      else if (entry.kind === 'zero') value = BigInt(entry.cluster * clusterBytes) | 1n
      else if (entry.kind === 'compressed') value = (1n << 62n) | (BigInt(entry.sectors % 2 ** (spec.clusterBits - 8)) << BigInt(x)) | BigInt(entry.byte)
      else value = entry.bitmap
      bytes.writeBigUInt64BE(value, at)
      if (extendedL2) bytes.writeBigUInt64BE(entry.bitmap, at + 8)
    })
    await install(bytes)
  }), { numRuns: 400 })
  t.pass('400 hand-made images')
})
