/**
 * Family `table`: raw images whose GPT or MBR is changed field by field (UEFI 2.10 §5.3 for the
 * GPT header and entries, the MBR's four 16-byte records at 446), with the CRCs recomputed or
 * left stale, plus images with no table at all and gzip, zstd or xz bytes given as raw (decoded: the
 * disk must hold the image they stand for).
 */
import { execFileSync } from 'node:child_process'
import { crc32, gzipSync } from 'node:zlib'
import type { Fixtures } from './fixtures.js'
import type { FuzzCase } from './fuzz-case.js'
import { pickChecksum, pickRawMode } from './http-cases.js'
import type { Random } from './random.js'

const SECTOR = 512
const ENTRY_BYTES = 128
/** GPT header fields: offset, width, name (UEFI 2.10 table 5-5). */
const GPT_FIELDS: ReadonlyArray<[number, 4 | 8, string]> = [
  [8, 4, 'revision'], [12, 4, 'header_size'], [24, 8, 'my_lba'], [32, 8, 'alternate_lba'], [40, 8, 'first_usable_lba'],
  [48, 8, 'last_usable_lba'], [72, 8, 'entries_lba'], [80, 4, 'entry_count'], [84, 4, 'entry_size'],
]
const BASIC_DATA_GUID = Buffer.from('a2a0d0ebe5b9334487c068b6b72699c7', 'hex') // EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, mixed-endian

/** The header's LBA: 1 (primary) or the image's last (backup). */
function headerLba (image: Buffer, copy: 'primary' | 'backup'): number {
  return copy === 'primary' ? 1 : image.length / SECTOR - 1
}

/** Entries CRC then header CRC, as a GPT writer does (only when the header's own fields are sane enough to locate them). */
function recomputeCrcs (image: Buffer, lba: number): void {
  const h = lba * SECTOR
  const entriesAt = Number(image.readBigUInt64LE(h + 72)) * SECTOR
  const entriesBytes = image.readUInt32LE(h + 80) * image.readUInt32LE(h + 84)
  if (entriesAt >= 0 && entriesBytes <= 1024 * 1024 && entriesAt + entriesBytes <= image.length) {
    image.writeUInt32LE(crc32(image.subarray(entriesAt, entriesAt + entriesBytes)), h + 88)
  }
  const headerBytes = Math.min(SECTOR, Math.max(92, image.readUInt32LE(h + 12)))
  image.writeUInt32LE(0, h + 16)
  image.writeUInt32LE(crc32(image.subarray(h, h + headerBytes)), h + 16)
}

function entriesOf (image: Buffer, lba: number): number {
  return Number(image.readBigUInt64LE(lba * SECTOR + 72)) * SECTOR
}

function nastyLba (random: Random, image: Buffer, original: bigint): bigint {
  const sectors = BigInt(image.length / SECTOR)
  return BigInt.asUintN(64, random.pick([
    0n, 1n, 2n, 33n, 34n, original - 1n, original + 1n, sectors - 1n, sectors, sectors + 1n, sectors * 2n,
    131072n, 131071n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n,
  ]))
}

function writeUtf16Name (entry: Buffer, name: string): void {
  entry.fill(0, 56, 128)
  entry.write(name, 56, 'utf16le')
}

/** `decoded`: the image a compressed file stands for (the agent decodes it: the disk must hold that). */
type Mutation = { image: Buffer; what: string; kind: string; decoded?: Buffer }

function mutateGpt (random: Random, base: Buffer): Mutation {
  const image = Buffer.from(base)
  const copy = random.weighted<'primary' | 'backup' | 'both'>([[5, 'primary'], [2, 'backup'], [2, 'both']])
  const copies = copy === 'both' ? (['primary', 'backup'] as const) : [copy]
  const recompute = random.chance(0.7)
  const crcNote = recompute ? 'crc ok' : 'crc stale'
  const finish = (what: string, kind: string): Mutation => {
    if (recompute) for (const c of copies) recomputeCrcs(image, headerLba(image, c))
    return { image, what: `${copy} ${what} ${crcNote}`, kind }
  }
  const kind = random.weighted<string>([
    [4, 'field'], [4, 'entry'], [2, 'overlap'], [3, 'config-2'], [1, 'no-table'], [1, 'primary-gone'], [1, 'sector-4k'], [1, 'mbr-of-gpt'], [2, 'flips'],
  ])
  switch (kind) {
    case 'field': {
      const [at, width, name] = random.pick(GPT_FIELDS)
      let value = 0n
      for (const c of copies) {
        const h = headerLba(image, c) * SECTOR + at
        const original = width === 8 ? image.readBigUInt64LE(h) : BigInt(image.readUInt32LE(h))
        value = name.endsWith('lba')
          ? nastyLba(random, image, original)
          : random.pick([0n, 1n, 4n, 64n, 91n, 92n, 93n, 127n, 129n, 256n, 512n, 4096n, 65536n, 2n ** 31n, 2n ** 32n - 1n, original + 1n])
        value &= width === 8 ? 2n ** 64n - 1n : 2n ** 32n - 1n
        if (width === 8) image.writeBigUInt64LE(value, h)
        else image.writeUInt32LE(Number(value), h)
      }
      return finish(`${name}=${value}`, `gpt header ${name}`)
    }
    case 'entry': {
      const slot = random.int(0, 2)
      const which = random.pick(['first', 'last'] as const)
      let value = 0n
      for (const c of copies) {
        const at = entriesOf(image, headerLba(image, c)) + slot * ENTRY_BYTES + (which === 'first' ? 32 : 40)
        if (at + 8 > image.length || at < 0) continue
        value = nastyLba(random, image, image.readBigUInt64LE(at))
        image.writeBigUInt64LE(value, at)
        if (image.readBigUInt64LE(at - (which === 'first' ? 32 : 40)) === 0n) BASIC_DATA_GUID.copy(image, at - (which === 'first' ? 32 : 40))
      }
      return finish(`entry ${slot + 1} ${which}_lba=${value}`, 'gpt entry lba')
    }
    case 'overlap': {
      for (const c of copies) {
        const entries = entriesOf(image, headerLba(image, c))
        const first = image.readBigUInt64LE(entries + ENTRY_BYTES + 32)
        const third = image.subarray(entries + 2 * ENTRY_BYTES, entries + 3 * ENTRY_BYTES)
        image.copy(third, 0, entries + ENTRY_BYTES, entries + 2 * ENTRY_BYTES)
        third.writeBigUInt64LE(first + 100n, 32)
        third[16] = (third[16] ?? 0) ^ 0xff // another unique GUID
      }
      return finish('entry 3 overlapping entry 2', 'gpt overlapping entries')
    }
    case 'config-2': {
      const sectors = BigInt(image.length / SECTOR)
      const [where, first, last] = random.pick<[string, bigint, bigint]>([
        ['over root', 4200n, 4300n], ['one sector at the end', sectors - 34n, sectors - 34n], ['past last usable', sectors - 20n, sectors + 2048n],
        ['at LBA 34', 34n, 2047n], ['whole disk', 34n, 131038n], ['beyond the image', sectors + 2048n, sectors + 4095n], ['before LBA 34', 2n, 40n],
      ])
      const slot = random.int(0, 127)
      for (const c of copies) {
        const at = entriesOf(image, headerLba(image, c)) + slot * ENTRY_BYTES
        if (at < 0 || at + ENTRY_BYTES > image.length) continue
        const entry = image.subarray(at, at + ENTRY_BYTES)
        BASIC_DATA_GUID.copy(entry, 0)
        entry.writeUInt32LE(0xc0f16 + slot, 16)
        entry.writeBigUInt64LE(first, 32)
        entry.writeBigUInt64LE(last, 40)
        writeUtf16Name(entry, 'config-2')
      }
      return finish(`config-2 in slot ${slot + 1} ${where}`, `gpt config-2 ${where}`)
    }
    case 'no-table':
      image.fill(0, 0, 34 * SECTOR)
      image.fill(0, image.length - 33 * SECTOR)
      return { image, what: 'no table at all', kind: 'no table' }
    case 'primary-gone':
      image.fill(0, SECTOR, 34 * SECTOR)
      return { image, what: 'primary header and entries zeroed (backup kept)', kind: 'gpt primary gone' }
    case 'sector-4k':
      // The header where a 4Kn disk's LBA 1 is.
      image.copy(image, 4096, SECTOR, 2 * SECTOR)
      image.fill(0, SECTOR, 2 * SECTOR)
      return { image, what: 'header at byte 4096 (4Kn layout)', kind: 'gpt 4Kn header' }
    case 'mbr-of-gpt': {
      const record = 446
      const [what, start, size, type] = random.pick<[string, number, number, number]>([
        ['protective too small', 1, 100, 0xee],
        ['protective past end', 1, 0xffffffff, 0xee],
        ['hybrid', 2048, 2048, 0x0c],
        ['protective starting at 0', 0, 1000, 0xee],
        ['not protective', 2048, 4096, 0x83],
      ])
      if (what === 'hybrid') {
        // A real hybrid (as `sgdisk -h` makes it): the 0xEE record over the GPT's own sectors, a data record after it.
        image.writeUInt32LE(start - 1, record + 12)
        image[record + 16 + 4] = type
        image.writeUInt32LE(start, record + 16 + 8)
        image.writeUInt32LE(size, record + 16 + 12)
        return { image, what: `protective MBR: ${what}`, kind: `gpt mbr ${what}` }
      }
      image[record + 4] = type
      image.writeUInt32LE(start, record + 8)
      image.writeUInt32LE(size, record + 12)
      return { image, what: `protective MBR: ${what}`, kind: `gpt mbr ${what}` }
    }
    default: {
      const count = random.int(1, 12)
      for (let n = 0; n < count; n++) image[random.int(0, 34 * SECTOR - 1)] = random.int(0, 255)
      return finish(`${count} random bytes in LBA 0-33`, 'gpt random flips')
    }
  }
}

function mutateMbr (random: Random, base: Buffer): Mutation {
  const image = Buffer.from(base)
  const slot = random.int(0, 3)
  const record = 446 + slot * 16
  const sectors = image.length / SECTOR
  const kind = random.weighted<string>([[3, 'start-size'], [1, 'all-slots'], [1, 'extended'], [1, 'no-signature'], [1, 'flips']])
  switch (kind) {
    case 'start-size': {
      const [what, start, size] = random.pick<[string, number, number]>([
        ['past the image', sectors + 10, 2048],
        ['overlapping', 3000, 2048],
        ['zero size', 6144, 0],
        ['to 2^32', 2048, 0xffffffff - 2048],
        ['at 0', 0, 100],
        ['whole image', 1, sectors - 1],
      ])
      if (image[record + 4] === 0) image[record + 4] = 0x83
      image.writeUInt32LE(start, record + 8)
      image.writeUInt32LE(size, record + 12)
      return { image, what: `mbr record ${slot + 1} ${what}`, kind: `mbr ${what}` }
    }
    case 'all-slots':
      for (let s = 0; s < 4; s++) {
        image[446 + s * 16 + 4] = 0x83
        image.writeUInt32LE(2048 + s * 1024, 446 + s * 16 + 8)
        image.writeUInt32LE(1024, 446 + s * 16 + 12)
      }
      return { image, what: 'mbr with four partitions (no free record)', kind: 'mbr full' }
    case 'extended':
      image[record + 4] = 0x05
      image.writeUInt32LE(6144, record + 8)
      image.writeUInt32LE(sectors - 6144, record + 12)
      return { image, what: `mbr record ${slot + 1} extended with a garbage EBR`, kind: 'mbr extended' }
    case 'no-signature':
      image[510] = 0
      return { image, what: 'mbr without 55AA', kind: 'mbr no signature' }
    default: {
      const count = random.int(1, 8)
      for (let n = 0; n < count; n++) image[random.int(440, 511)] = random.int(0, 255)
      return { image, what: `${count} random bytes in the mbr records`, kind: 'mbr random flips' }
    }
  }
}

/** A compressed raw image: decoded on its way (image/stream-decoder), the disk holds `base`. */
function compressed (random: Random, base: Buffer): Mutation {
  const tool = (command: string, args: string[]): Buffer => execFileSync(command, args, { input: base, maxBuffer: 64 * 1024 * 1024 })
  const name = random.weighted<'gzip' | 'zstd' | 'xz'>([[1, 'gzip'], [1, 'zstd'], [1, 'xz']])
  const image = name === 'gzip' ? gzipSync(base) : name === 'zstd' ? tool('zstd', ['-c', '-q']) : tool('xz', ['-c', '-0'])
  return { image, decoded: base, what: `${name} bytes given as raw`, kind: `${name} as raw` }
}

export function tableCase (index: number, random: Random, fixtures: Fixtures): FuzzCase {
  const source = random.weighted<'gpt' | 'mbr' | 'compressed' | 'unchanged'>([[12, 'gpt'], [5, 'mbr'], [1, 'compressed'], [1, 'unchanged']])
  const mutation: Mutation = source === 'gpt'
    ? mutateGpt(random, fixtures.gptImage)
    : source === 'mbr'
      ? mutateMbr(random, fixtures.mbrImage)
      : source === 'compressed'
        ? compressed(random, random.chance(0.5) ? fixtures.gptImage : fixtures.mbrImage)
        : { image: random.chance(0.5) ? fixtures.gptImage : fixtures.mbrImage, what: 'unchanged', kind: 'unchanged' }
  const served = mutation.image
  return {
    id: `table-${index}`,
    family: 'table',
    index,
    label: mutation.what,
    kind: mutation.kind,
    imageType: 'raw',
    served,
    guest: () => mutation.decoded ?? served,
    behaviour: { kind: 'ok', chunked: false },
    mode: pickRawMode(random),
    checksumType: pickChecksum(random),
    mustFail: false,
  }
}
