/**
 * Family `qcow2`: qemu-img's files with targeted changes (a header field, an L1 or L2 entry, a
 * refcount) or random flips. The referee for an install is `qemu-img convert -O raw` of the
 * changed file, made only when the agent installed it.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Fixtures, Qcow2Fixture } from './fixtures.js'
import { qemuRaw } from './fixtures.js'
import type { FuzzCase, InstallMode } from './fuzz-case.js'
import { pickChecksum } from './http-cases.js'
import type { Random } from './random.js'

/** QEMU's docs/interop/qcow2.txt, "Header": offset, width, name. */
const HEADER_FIELDS: ReadonlyArray<[number, 4 | 8 | 1, string]> = [
  [4, 4, 'version'], [8, 8, 'backing_file_offset'], [16, 4, 'backing_file_size'], [20, 4, 'cluster_bits'], [24, 8, 'size'],
  [32, 4, 'crypt_method'], [36, 4, 'l1_size'], [40, 8, 'l1_table_offset'], [48, 8, 'refcount_table_offset'],
  [56, 4, 'refcount_table_clusters'], [60, 4, 'nb_snapshots'], [64, 8, 'snapshots_offset'],
  [72, 8, 'incompatible_features'], [80, 8, 'compatible_features'], [88, 8, 'autoclear_features'], [96, 4, 'refcount_order'],
  [100, 4, 'header_length'], [104, 1, 'compression_type'],
]
const OFFSET_MASK = 0x00fffffffffffe00n // L1/L2/refcount-table entries: bits 9-55

function nasty (random: Random, original: bigint, fileBytes: number, width: 1 | 4 | 8): bigint {
  const max = width === 8 ? 2n ** 64n - 1n : width === 4 ? 2n ** 32n - 1n : 255n
  const value = random.pick([
    0n, 1n, original + 1n, original - 1n, original * 2n, original / 2n, BigInt(fileBytes), BigInt(fileBytes - 512), BigInt(fileBytes) + 65536n,
    2n ** 31n, 2n ** 32n - 1n, 2n ** 53n, 2n ** 62n, 2n ** 63n, max, original ^ (1n << BigInt(random.int(0, width * 8 - 1))),
  ])
  return ((value % (max + 1n)) + (max + 1n)) % (max + 1n)
}

function writeField (bytes: Buffer, at: number, width: 1 | 4 | 8, value: bigint): void {
  if (at + width > bytes.length) return
  if (width === 8) bytes.writeBigUInt64BE(value, at)
  else if (width === 4) bytes.writeUInt32BE(Number(value), at)
  else bytes[at] = Number(value)
}

function readField (bytes: Buffer, at: number, width: 1 | 4 | 8): bigint {
  if (at + width > bytes.length) return 0n
  return width === 8 ? bytes.readBigUInt64BE(at) : width === 4 ? BigInt(bytes.readUInt32BE(at)) : BigInt(bytes[at] ?? 0)
}

/** The fixture's table offsets, read from its header. */
function layout (bytes: Buffer): {
  l1: number
  l1Entries: number
  l2: number[]
  refcountTable: number
  refcountBlocks: number[]
  clusterBytes: number
  extendedL2: boolean
} {
  const clusterBytes = 2 ** bytes.readUInt32BE(20)
  const l1 = Number(bytes.readBigUInt64BE(40))
  const l1Entries = bytes.readUInt32BE(36)
  const l2 = Array.from({ length: l1Entries }, (_, i) => Number(bytes.readBigUInt64BE(l1 + i * 8) & OFFSET_MASK)).filter((o) => o !== 0)
  const refcountTable = Number(bytes.readBigUInt64BE(48))
  const refcountBlocks = Array.from({ length: clusterBytes / 8 }, (_, i) => {
    return refcountTable + i * 8 < bytes.length ? Number(bytes.readBigUInt64BE(refcountTable + i * 8) & OFFSET_MASK) : 0
  }).filter((o) => o !== 0)
  const extendedL2 = bytes.readUInt32BE(4) >= 3 && (bytes.readBigUInt64BE(72) & 16n) !== 0n
  return { l1, l1Entries, l2, refcountTable, refcountBlocks, clusterBytes, extendedL2 }
}

function mutate (random: Random, fixture: Qcow2Fixture): { bytes: Buffer; what: string; kind: string } {
  const bytes = Buffer.from(fixture.bytes)
  const map = layout(bytes)
  const kind = random.weighted<string>([[3, 'header'], [3, 'l1'], [5, 'l2'], [1, 'l2-fill'], [1, 'grown'], [2, 'refcount'], [3, 'flips'], [1, 'truncate']])
  switch (kind) {
    case 'header': {
      const [at, width, name] = random.pick(HEADER_FIELDS)
      const value = nasty(random, readField(bytes, at, width), bytes.length, width)
      writeField(bytes, at, width, value)
      return { bytes, what: `${name}=${value}`, kind: `header ${name}` }
    }
    case 'l1': {
      const i = random.int(0, Math.max(0, map.l1Entries - 1))
      const original = readField(bytes, map.l1 + i * 8, 8)
      const value = random.pick([
        0n, 1n << 63n, original | 1n, original & ~(1n << 63n), BigInt(map.l1), BigInt(map.refcountTable), 0x200n, BigInt(bytes.length),
        BigInt(map.l2[0] ?? 0) | (1n << 63n), nasty(random, original, bytes.length, 8),
      ])
      writeField(bytes, map.l1 + i * 8, 8, value)
      return { bytes, what: `L1[${i}]=0x${value.toString(16)}`, kind: 'L1 entry' }
    }
    case 'l2': {
      const table = map.l2.length > 0 ? random.pick(map.l2) : map.l1
      const entryBytes = map.extendedL2 ? 16 : 8
      const i = random.int(0, Math.min(map.clusterBytes / entryBytes, (4 * 1024 * 1024) / map.clusterBytes) - 1)
      const at = table + i * entryBytes + (map.extendedL2 && random.chance(0.3) ? 8 : 0)
      const original = readField(bytes, at, 8)
      const value = random.pick([
        0n, 1n, original | 1n, original ^ (1n << 62n), (1n << 62n) | BigInt(bytes.length - 100), (1n << 62n) | ((1n << 61n) - 1n),
        BigInt(map.l1) | (1n << 63n), BigInt(table) | (1n << 63n), BigInt(bytes.length) | (1n << 63n), (original & OFFSET_MASK) + 256n,
        0xffffffff00000000n, nasty(random, original, bytes.length, 8),
      ])
      writeField(bytes, at, 8, value)
      return { bytes, what: `L2@${table}[${i}]${at % entryBytes === 8 ? '.bitmap' : ''}=0x${value.toString(16)}`, kind: 'L2 entry' }
    }
    case 'l2-fill': {
      // Every entry of one L2 table the same (one compressed or data cluster for the whole range, or a compressed entry of the widest size).
      const table = map.l2.length > 0 ? random.pick(map.l2) : map.l1
      const entryBytes = map.extendedL2 ? 16 : 8
      const entries = Math.min(map.clusterBytes / entryBytes, Math.floor((bytes.length - table) / entryBytes))
      const used = Array.from({ length: entries }, (_, i) => bytes.readBigUInt64BE(table + i * entryBytes)).filter((e) => e !== 0n)
      const value = random.chance(0.3) || used.length === 0 ? (1n << 62n) | ((1n << 62n) - 1n) : random.pick(used)
      for (let i = 0; i < entries; i++) bytes.writeBigUInt64BE(value, table + i * entryBytes)
      return { bytes, what: `L2@${table} all ${entries} entries=0x${value.toString(16)}`, kind: 'L2 table filled with one entry' }
    }
    case 'grown': {
      // The virtual size grown to the disk's (64 MiB): most of it unallocated, read as zeros.
      bytes.writeBigUInt64BE(64n * 1024n * 1024n, 24)
      const l1Needed = Math.ceil((64 * 1024 * 1024) / (map.clusterBytes * (map.clusterBytes / (map.extendedL2 ? 16 : 8))))
      if (random.chance(0.5) && l1Needed > map.l1Entries) bytes.writeUInt32BE(l1Needed, 36)
      return { bytes, what: `size=64 MiB${bytes.readUInt32BE(36) !== map.l1Entries ? `, l1_size=${l1Needed}` : ''}`, kind: 'virtual size grown to the disk' }
    }
    case 'refcount': {
      const target = map.refcountBlocks.length > 0 && random.chance(0.6)
        ? random.pick(map.refcountBlocks) + random.int(0, 63) * 2
        : map.refcountTable + random.int(0, 3) * 8
      const width = target >= map.refcountTable && target < map.refcountTable + map.clusterBytes ? 8 : 4
      const value = nasty(random, readField(bytes, target, width), bytes.length, width)
      writeField(bytes, target, width, value)
      return { bytes, what: `refcount@${target}=${value}`, kind: 'refcount' }
    }
    case 'truncate': {
      const at = random.int(104, bytes.length - 1)
      return { bytes: bytes.subarray(0, at), what: `cut at ${at}`, kind: 'truncated' }
    }
    default: {
      const count = random.int(1, 16)
      const where = random.chance(0.5) ? Math.min(bytes.length, map.clusterBytes * 4) : bytes.length
      for (let n = 0; n < count; n++) bytes[random.int(0, where - 1)] = random.int(0, 255)
      return { bytes, what: `${count} random bytes in the first ${where}`, kind: 'random flips' }
    }
  }
}

export function qcow2Case (index: number, random: Random, fixtures: Fixtures, workDir: string): FuzzCase {
  const fixture = random.pick(fixtures.qcow2)
  const pristine = random.chance(0.05)
  const mutation = pristine ? { bytes: fixture.bytes, what: 'unchanged', kind: 'unchanged' } : mutate(random, fixture)
  const served = mutation.bytes
  return {
    id: `qcow2-${index}`,
    family: 'qcow2',
    index,
    label: `${fixture.name} ${mutation.what}`,
    kind: mutation.kind,
    imageType: 'qcow2',
    served,
    guest: () => {
      if (pristine) return fixture.guest
      const file = join(workDir, 'referee.qcow2')
      writeFileSync(file, served)
      try {
        return qemuRaw(file)
      } catch {
        return undefined
      }
    },
    behaviour: { kind: 'ok', chunked: false },
    // Over a 1 MiB budget a qcow2 streams: the hostile server serves no bytes=N-M, so its tables come from the stream.
    mode: random.weighted<InstallMode>([[3, 'memory'], [1, 'over-budget']]),
    checksumType: pickChecksum(random),
    mustFail: false,
  }
}
