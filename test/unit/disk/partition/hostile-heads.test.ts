/**
 * Hostile heads: every absurd field gives GPT_MOVE_FAILED (or CONFIGDRIVE_FAILED) with a reason,
 * never a crash, and nothing is written where it must not be: not below the head, not outside the
 * disk, not inside the image (relocateBackupGpt writes only at or after the image's last LBA).
 */
import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { inspect } from 'node:util'
import { crc32 } from 'node:zlib'
import type { RelocateResult } from '../../../../agent/disk/partition-table.js'
import { addConfigDrivePartition, HeadOverlay, relocateBackupGpt } from '../../../../agent/disk/partition-table.js'
import { isInstallError } from '../../../../agent/errors/install-error.js'
import { craftGptImage, fixHeaderCrc, MemoryIo, MiB } from './fixtures/partition-tools.js'

const IMAGE_SECTORS = 8192 // 4 MiB of 512-byte sectors
const DISK_BYTES = 16 * MiB
const base = craftGptImage({
  sectorBytes: 512,
  imageSectors: IMAGE_SECTORS,
  partitions: [{ firstLba: 2048, lastLba: 4095 }, { firstLba: 4096, lastLba: 8158 }],
})

interface Setup { head: Buffer; io: MemoryIo; image: Buffer }

/** The install's view of `image` on a 16 MiB disk in memory; the head zeroed on the disk. */
function setup (image: Buffer, sectorBytes = 512): Setup {
  const data = Buffer.alloc(DISK_BYTES)
  image.copy(data)
  const head = Buffer.from(data.subarray(0, MiB))
  data.fill(0, 0, MiB)
  return { head, io: new MemoryIo(data, sectorBytes), image }
}

function fixEntriesCrc (image: Buffer, headerOffset: number, entriesOffset: number): void {
  image.writeUInt32LE(crc32(image.subarray(entriesOffset, entriesOffset + 128 * 128)), headerOffset + 88)
  fixHeaderCrc(image, headerOffset)
}

const cases: Array<[string, (image: Buffer) => void, RegExp]> = [
  ['entry count 2^32 − 1', (i) => i.writeUInt32LE(0xffffffff, 512 + 80), /has 4294967295 partition entries \(1 to 8192 allowed\)/],
  ['entry count 9000 (over 1 MiB of entries)', (i) => i.writeUInt32LE(9000, 512 + 80), /has 9000 partition entries/],
  ['entry count 0', (i) => i.writeUInt32LE(0, 512 + 80), /has 0 partition entries/],
  ['entries of 256 bytes', (i) => i.writeUInt32LE(256, 512 + 84), /has 256-byte entries \(only 128 is supported\)/],
  ['a header of 91 bytes', (i) => i.writeUInt32LE(91, 512 + 12), /has a size of 91 bytes \(92 to 512 allowed\)/],
  ['a header of 513 bytes', (i) => i.writeUInt32LE(513, 512 + 12), /has a size of 513 bytes/],
  ['MyLBA 2', (i) => i.writeBigUInt64LE(2n, 512 + 24), /says it is at LBA 2/],
  ['MyLBA 2^64 − 1', (i) => i.writeBigUInt64LE(2n ** 64n - 1n, 512 + 24), /MyLBA 18446744073709551615 is beyond the disk's last LBA 32767/],
  ['AlternateLBA 2^64 − 1', (i) => i.writeBigUInt64LE(2n ** 64n - 1n, 512 + 32), /AlternateLBA of 18446744073709551615/],
  ['LastUsableLBA beyond the disk', (i) => i.writeBigUInt64LE(2n ** 63n, 512 + 48), /LastUsableLBA 9223372036854775808 is beyond the disk's last LBA 32767/],
  ['FirstUsableLBA after LastUsableLBA', (i) => i.writeBigUInt64LE(9000n, 512 + 40), /LastUsableLBA 8158 before FirstUsableLBA 9000/],
  ['PartitionEntryLBA beyond the disk', (i) => i.writeBigUInt64LE(2n ** 53n, 512 + 72), /PartitionEntryLBA 9007199254740992 is beyond/],
  ['PartitionEntryLBA 0 (over the MBR)', (i) => i.writeBigUInt64LE(0n, 512 + 72), /do not lie between LBA 2 and FirstUsableLBA 34/],
  ['entries running into the usable space', (i) => i.writeBigUInt64LE(20n, 512 + 72), /do not lie between LBA 2 and FirstUsableLBA 34/],
]
const entryCases: Array<[string, (image: Buffer) => void, RegExp]> = [
  ['a partition ending beyond the disk', (i) => i.writeBigUInt64LE(40000n, 1024 + 128 + 40), /partition 2 EndingLBA 40000 is beyond the disk's last LBA 32767/],
  ['a partition ending at 2^64 − 1', (i) => i.writeBigUInt64LE(2n ** 64n - 1n, 1024 + 40), /partition 1 EndingLBA 18446744073709551615 is beyond/],
  ['a partition ending before it starts', (i) => i.writeBigUInt64LE(100n, 1024 + 40), /partition 1 ends \(LBA 100\) before it starts \(LBA 2048\)/],
]

t.test('absurd header fields: GPT_MOVE_FAILED with the reason, nothing written', async (t) => {
  const crcCase = [
    'entries that fail their CRC',
    (i: Buffer) => { i.writeUInt8(i.readUInt8(1024 + 60) ^ 1, 1024 + 60) },
    /GPT entries at LBA 2 fail their CRC/,
  ] as const
  for (const [what, mutate, reason] of [...cases, ...entryCases, crcCase]) {
    const image = Buffer.from(base)
    mutate(image)
    if (cases.some(([w]) => w === what)) fixHeaderCrc(image, 512)
    if (entryCases.some(([w]) => w === what)) fixEntriesCrc(image, 512, 1024)
    image.fill(0, (IMAGE_SECTORS - 1) * 512) // no backup to fall back on
    const { head, io } = setup(image)
    const before = Buffer.from(head)
    const err = await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: image.length }).catch((e: unknown) => e)
    t.match(err, { code: 'GPT_MOVE_FAILED', message: 'Can not move backup GPT data structures to the end of disk.' }, what)
    t.match(String((err as Error).cause), reason, what)
    t.same(io.writes, [], `${what}: nothing written`)
    t.ok(head.equals(before), `${what}: head unchanged`)
  }
})

t.test('absurd primary fields with a valid backup: repaired from the backup', async (t) => {
  for (const [what, mutate] of cases) {
    const image = Buffer.from(base)
    mutate(image)
    fixHeaderCrc(image, 512)
    const { head, io } = setup(image)
    t.match(await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: image.length }), { moved: true, repairedFromBackup: true }, what)
    t.match(await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: image.length }), { moved: false }, `${what}: a second run has nothing to do`)
  }
})

t.test('a partition past what the disk can hold once the backup is there', async (t) => {
  const image = Buffer.from(base)
  image.writeBigUInt64LE(8180n, 1024 + 128 + 40) // partition 2 into the backup entries' place
  fixEntriesCrc(image, 512, 1024)
  const data = Buffer.from(image) // the disk is as large as the image
  const head = Buffer.from(data.subarray(0, MiB))
  const io = new MemoryIo(data)
  await t.rejects(relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: image.length }), {
    code: 'GPT_MOVE_FAILED',
    cause: { message: 'partition 2 ends at LBA 8180, past the last usable LBA 8158 of the disk' },
  })
  t.same(io.writes, [])
})

t.test('a bad image size is refused', async (t) => {
  for (const imageBytes of [Number.NaN, -1, 0, DISK_BYTES + 1, 2 ** 60]) {
    const { head, io } = setup(base)
    await t.rejects(relocateBackupGpt(new HeadOverlay(head, io), { imageBytes }), { code: 'GPT_MOVE_FAILED' }, String(imageBytes))
    t.same(io.writes, [])
  }
})

t.test('random heads never crash', async (t) => {
  for (let i = 0; i < 200; i++) {
    const head = randomBytes(MiB)
    if (i % 2 === 0) {
      head.write('EFI PART', 512, 'latin1')
      head.set([0x55, 0xaa], 510)
      head.writeUInt8(0xee, 446 + 4)
      if (i % 4 === 0) fixHeaderCrc(head, 512)
    }
    const io = new MemoryIo(Buffer.alloc(8 * MiB))
    for (const step of [
      async () => await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: 4 * MiB }),
      async () => await addConfigDrivePartition(new HeadOverlay(head, io)),
    ]) {
      const err = await step().then(() => undefined, (e: unknown) => e)
      if (err !== undefined && !(isInstallError(err) && ['GPT_MOVE_FAILED', 'CONFIGDRIVE_FAILED'].includes(err.code))) t.fail(`unexpected ${inspect(err)}`)
      if (isInstallError(err) && err.cause instanceof RangeError) t.fail(`a range reached the I/O checks: ${err.cause.message}`)
    }
    if (io.writes.some((w) => w.offset < head.length)) t.fail('a write below the head')
  }
  t.pass('200 random heads')
})

// ── property: mutations of a valid GPT ─────────────────────────────────────────────────────────

function isRelocateResult (value: unknown): value is RelocateResult {
  return typeof value === 'object' && value !== null && 'moved' in value
}

const u64Fields = [24, 32, 40, 48, 72] as const
const u32Fields = [12, 80, 84] as const

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat({ max: 2 * 4096 + 128 * 128 }), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    kind: fc.constant('u64' as const),
    field: fc.constantFrom(...u64Fields),
    value: fc.oneof(
      fc.constantFrom(0n, 1n, 2n, 6n, 33n, 34n, 2047n, 8191n, 8192n, 32767n, 32768n, 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n),
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    ),
  }),
  fc.record({
    kind: fc.constant('u32' as const),
    field: fc.constantFrom(...u32Fields),
    value: fc.oneof(fc.constantFrom(0, 1, 4, 91, 92, 128, 256, 511, 512, 513, 4096, 8192, 8193, 2 ** 31, 2 ** 32 - 1), fc.nat()),
  }),
  fc.record({ kind: fc.constant('entry' as const), index: fc.nat({ max: 3 }), field: fc.constantFrom(32, 40), value: fc.bigInt({ min: 0n, max: 40000n }) }),
)

t.test('mutated GPTs: a clean result or a clean refusal, never a write out of place', async (t) => {
  await fc.assert(fc.asyncProperty(
    fc.constantFrom(512, 4096), fc.array(mutation, { minLength: 1, maxLength: 6 }), fc.boolean(), fc.boolean(),
    async (sectorBytes, mutations, fixCrcs, keepBackup) => {
      const imageSectors = 4 * MiB / sectorBytes
      const step = MiB / sectorBytes
      const image = craftGptImage({
        sectorBytes,
        imageSectors,
        partitions: [{ firstLba: step, lastLba: 2 * step - 1 }, { firstLba: 2 * step, lastLba: 3 * step - 1 }],
      })
      const header = sectorBytes
      const entries = 2 * sectorBytes
      for (const m of mutations) {
        if (m.kind === 'byte') image[m.at] = m.value
        else if (m.kind === 'u64') image.writeBigUInt64LE(m.value, header + m.field)
        else if (m.kind === 'u32') image.writeUInt32LE(m.value, header + m.field)
        else image.writeBigUInt64LE(m.value, entries + m.index * 128 + m.field)
      }
      if (fixCrcs) fixEntriesCrc(image, header, entries)
      if (!keepBackup) image.fill(0, (imageSectors - 1) * sectorBytes)
      const { head, io } = setup(image, sectorBytes)
      const imageEnd = (imageSectors - 1) * sectorBytes
      const moved: unknown = await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: image.length }).catch((e: unknown) => e)
      if (!isRelocateResult(moved)) {
        if (!isInstallError(moved) || moved.code !== 'GPT_MOVE_FAILED') throw moved
        if (moved.cause instanceof RangeError) throw moved.cause
        if (io.writes.length > 0) throw new Error('writes before a refusal')
        return
      }
      for (const w of io.writes) if (w.offset < Math.max(head.length, imageEnd)) throw new Error(`relocate wrote at ${w.offset}, inside the image`)
      if (moved.kind === 'gpt') {
        const again = await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: image.length })
        if (again.moved) throw new Error('a second relocate moved again')
      }
      io.writes.length = 0
      const added: unknown = await addConfigDrivePartition(new HeadOverlay(head, io)).catch((e: unknown) => e)
      if (added instanceof Error) {
        if (!isInstallError(added) || added.code !== 'CONFIGDRIVE_FAILED') throw added
        if (added.cause instanceof RangeError) throw added.cause
      }
      for (const w of io.writes) if (w.offset < head.length) throw new Error(`add wrote at ${w.offset}, below the head`)
    },
  ), { numRuns: 400 })
  t.pass('400 mutated GPTs')
})
