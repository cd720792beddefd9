import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, openSync, readFileSync, readSync, closeSync, statSync, writeFileSync, truncateSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ext4FreeBlocks, type ReadAt } from '../../../agent/image/ext4-free-blocks.js'
import { tempDir } from '../../helpers/disk-files.js'

/**
 * The free blocks read from an ext2/3/4 filesystem's own bitmaps must be exactly those dumpe2fs
 * (e2fsprogs, the referee) lists, group by group, for the layouts mke2fs makes: 4 KiB and 1 KiB
 * blocks, flex_bg with BLOCK_UNINIT groups, ext2, sparse_super2, no sparse_super. Files written
 * with `mke2fs -d` and some deleted with debugfs, so freed blocks are among the free. A filesystem
 * whose bitmaps cannot be trusted (not cleanly unmounted, errors, meta_bg, bigalloc) is said so.
 */

const MiB = 1024 * 1024

function reader (file: string): ReadAt {
  return async (offset, length) => {
    const fd = openSync(file, 'r')
    try {
      const out = Buffer.alloc(length)
      const n = readSync(fd, out, 0, length, offset)
      return out.subarray(0, n)
    } finally {
      closeSync(fd)
    }
  }
}

/** A filesystem image made by mke2fs from a directory of files, then `deleted` removed with debugfs. */
function makeFs (dir: string, name: string, sizeBytes: number, mkfsArgs: string[], deleted = ['b.bin', 'sub/d.bin']): string {
  const content = join(dir, `${name}-content`)
  mkdirSync(join(content, 'sub'), { recursive: true })
  writeFileSync(join(content, 'a.bin'), randomBytes(3 * MiB))
  writeFileSync(join(content, 'b.bin'), randomBytes(5 * MiB + 123))
  writeFileSync(join(content, 'sub', 'c.bin'), randomBytes(2 * MiB))
  writeFileSync(join(content, 'sub', 'd.bin'), randomBytes(MiB + 7))
  const image = join(dir, `${name}.img`)
  writeFileSync(image, '')
  truncateSync(image, sizeBytes)
  execFileSync('mke2fs', ['-q', '-F', ...mkfsArgs, '-d', content, image], { stdio: ['ignore', 'ignore', 'pipe'] })
  for (const path of deleted) execFileSync('debugfs', ['-w', '-R', `rm /${path}`, image], { stdio: ['ignore', 'ignore', 'ignore'] })
  return image
}

/** dumpe2fs's free blocks of every group, as merged byte ranges. */
function dumpe2fsFree (image: string): { blockBytes: number; free: Array<[number, number]> } {
  const out = execFileSync('dumpe2fs', [image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  const blockBytes = Number(/^Block size:\s+(\d+)/m.exec(out)?.[1])
  const free: Array<[number, number]> = []
  for (const line of out.split('\n')) {
    const match = /^\s+Free blocks: (.*)$/.exec(line)
    if (match === null) continue
    for (const part of (match[1] ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '')) {
      const [from, to] = part.split('-').map(Number) as [number, number | undefined]
      const start = from * blockBytes
      const end = ((to ?? from) + 1) * blockBytes
      const last = free[free.length - 1]
      if (last !== undefined && last[1] === start) last[1] = end
      else free.push([start, end])
    }
  }
  return { blockBytes, free }
}

const layouts: Array<{ name: string; sizeBytes: number; args: string[] }> = [
  { name: 'ext4, 4 KiB blocks, flex_bg over 8 groups (5 of them BLOCK_UNINIT)', sizeBytes: 256 * MiB, args: ['-t', 'ext4', '-b', '4096', '-g', '8192'] },
  { name: 'ext4, 1 KiB blocks (first data block 1)', sizeBytes: 64 * MiB, args: ['-t', 'ext4', '-b', '1024'] },
  { name: 'ext4, 64bit with 1 KiB blocks and many groups', sizeBytes: 96 * MiB, args: ['-t', 'ext4', '-b', '1024', '-O', '64bit', '-g', '2048'] },
  { name: 'ext2 (no flex_bg, no extents, no journal)', sizeBytes: 64 * MiB, args: ['-t', 'ext2', '-b', '1024'] },
  { name: 'ext4 with sparse_super2', sizeBytes: 128 * MiB, args: ['-t', 'ext4', '-b', '1024', '-O', 'sparse_super2'] },
  { name: 'ext3 without sparse_super (a backup in every group)', sizeBytes: 64 * MiB, args: ['-t', 'ext3', '-b', '1024', '-O', '^sparse_super,^resize_inode'] },
]

for (const layout of layouts) {
  t.test(`${layout.name}: the free blocks are dumpe2fs's`, async (t) => {
    const dir = tempDir()
    t.teardown(dir.remove)
    const image = makeFs(dir.path, 'fs', layout.sizeBytes, layout.args)
    const verdict = await ext4FreeBlocks(reader(image), statSync(image).size)
    const expected = dumpe2fsFree(image)
    if (verdict.kind !== 'ext4') {
      t.fail(`not read: ${JSON.stringify(verdict)}`)
      return
    }
    t.equal(verdict.blockBytes, expected.blockBytes)
    t.same(verdict.free, expected.free, 'the same free ranges, block for block')
    t.equal(verdict.freeBytes, expected.free.reduce((sum, [s, e]) => sum + e - s, 0))
    t.ok(verdict.freeBytes > 0 && verdict.freeBytes < layout.sizeBytes)
  })
}

t.test('a deleted file\'s blocks are free: its bytes would not be captured', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const kept = makeFs(dir.path, 'kept', 64 * MiB, ['-t', 'ext4', '-b', '4096'], [])
  const deleted = makeFs(dir.path, 'deleted', 64 * MiB, ['-t', 'ext4', '-b', '4096'])
  const a = await ext4FreeBlocks(reader(kept), 64 * MiB)
  const b = await ext4FreeBlocks(reader(deleted), 64 * MiB)
  if (a.kind !== 'ext4' || b.kind !== 'ext4') throw new Error('not read')
  // b.bin and sub/d.bin: 5 MiB + 123 and 1 MiB + 7 bytes, in 4 KiB blocks.
  t.equal(b.freeBytes - a.freeBytes, (Math.ceil((5 * MiB + 123) / 4096) + Math.ceil((MiB + 7) / 4096)) * 4096)
})

const untrusted: Array<{ name: string; args: string[]; after?: string; reason: RegExp }> = [
  { name: 'not cleanly unmounted', args: ['-t', 'ext4'], after: 'ssv state 0', reason: /not cleanly unmounted/ },
  { name: 'errors recorded', args: ['-t', 'ext4'], after: 'ssv state 3', reason: /errors/ },
  { name: 'a journal to replay', args: ['-t', 'ext4'], after: 'feature needs_recovery', reason: /journal needs recovery/ },
  { name: 'meta_bg', args: ['-t', 'ext4', '-O', 'meta_bg,^resize_inode'], reason: /meta_bg/ },
  { name: 'bigalloc', args: ['-t', 'ext4', '-O', 'bigalloc', '-C', '16384'], reason: /bigalloc/ },
]

for (const c of untrusted) {
  t.test(`untrusted: ${c.name}`, async (t) => {
    const dir = tempDir()
    t.teardown(dir.remove)
    const image = makeFs(dir.path, 'fs', 64 * MiB, c.args, [])
    if (c.after !== undefined) execFileSync('debugfs', ['-w', '-R', c.after, image], { stdio: ['ignore', 'ignore', 'ignore'] })
    const verdict = await ext4FreeBlocks(reader(image), 64 * MiB)
    t.match(verdict, { kind: 'untrusted', reason: c.reason })
  })
}

t.test('not ext4: zeros, another filesystem, a partition smaller than the filesystem claims', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const zeros = join(dir.path, 'zeros.img')
  writeFileSync(zeros, Buffer.alloc(MiB))
  t.same(await ext4FreeBlocks(reader(zeros), MiB), { kind: 'not-ext4' })
  const image = makeFs(dir.path, 'fs', 64 * MiB, ['-t', 'ext4'], [])
  t.match(await ext4FreeBlocks(reader(image), 32 * MiB), { kind: 'untrusted', reason: /more than its partition's/ })
})

t.test('a hostile superblock: 8 blocks per group on a large filesystem is refused before its descriptors are read', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const image = makeFs(dir.path, 'fs', 64 * MiB, ['-t', 'ext4'], [])
  const superblock = Buffer.alloc(1024)
  const fd = openSync(image, 'r+')
  readSync(fd, superblock, 0, 1024, 1024)
  superblock.writeUInt32LE(8, 0x20) // s_blocks_per_group
  superblock.writeUInt32LE(0xffffffff, 0x4) // s_blocks_count_lo
  const reads: number[] = []
  const read: ReadAt = async (offset, length) => {
    reads.push(length)
    return offset === 1024 ? superblock : Buffer.alloc(0)
  }
  closeSync(fd)
  t.match(await ext4FreeBlocks(read, 2 ** 50), { kind: 'untrusted', reason: /block groups are more than/ })
  t.same(reads, [1024], 'only the superblock was read')
})

t.test('hostile superblocks and descriptors (seeded mutations): always a verdict, never a throw, free ranges inside the filesystem', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const image = makeFs(dir.path, 'fs', 16 * MiB, ['-t', 'ext4', '-b', '1024', '-g', '1024'], ['b.bin'])
  const original = readFileSync(image)
  let seed = 0x5eed
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0
    return seed % n
  }
  let trusted = 0
  for (let round = 0; round < 300; round++) {
    const bytes = Buffer.from(original)
    // A field the reader uses set to any 32-bit value (the superblock's counts, sizes and features;
    // a descriptor's bitmap, table and flags), or a few bytes anywhere in the superblock and the
    // first descriptors (1024..4095).
    const fields = [0x4, 0x14, 0x18, 0x20, 0x28, 0x3a, 0x4c, 0x58, 0x5c, 0x60, 0x64, 0xce, 0xfe, 0x150].map((f) => 1024 + f)
    const descriptors = [0x0, 0x4, 0x8, 0x12].flatMap((f) => [0, 1, 2, 5].map((g) => 2048 + g * 32 + f))
    for (let i = 0, n = 1 + random(3); i < n; i++) {
      const all = [...fields, ...descriptors]
      if (random(2) === 0) bytes.writeUInt32LE(random(2 ** 32), all[random(all.length)] ?? 0)
      else bytes[1024 + random(3072)] = random(256)
    }
    const read: ReadAt = async (offset, length) => bytes.subarray(offset, offset + length)
    let verdict
    try {
      verdict = await ext4FreeBlocks(read, bytes.length)
    } catch (err) {
      t.fail(`round ${round}: threw ${String(err)}`)
      continue
    }
    if (verdict.kind !== 'ext4') continue
    trusted++
    const previousEnd = (i: number): number => (i === 0 ? -1 : (verdict.free[i - 1] as [number, number])[1])
    const inside = verdict.free.every(([start, end], i) => start < end && end <= bytes.length && previousEnd(i) < start)
    if (!inside) t.fail(`round ${round}: free ranges outside the filesystem or out of order`)
  }
  t.ok(trusted > 0 && trusted < 300, `${trusted} of 300 mutated filesystems still read (the others refused or not ext4)`)
})

t.test('a descriptor pointing at the wrong bitmap block: untrusted (without metadata_csum, its free count disagrees; with it, its checksum)', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  for (const [csum, reason] of [
    ['^metadata_csum', /group 0's bitmap shows \d+ free blocks where its descriptor says \d+/],
    ['metadata_csum', /group 0's descriptor fails its checksum/],
  ] as const) {
    const image = makeFs(dir.path, `fs-${csum}`, 16 * MiB, ['-t', 'ext4', '-b', '1024', '-g', '1024', '-O', `^flex_bg,^64bit,${csum}`], [])
    const bytes = readFileSync(image)
    const read: ReadAt = async (offset, length) => bytes.subarray(offset, offset + length)
    t.match(await ext4FreeBlocks(read, bytes.length), { kind: 'ext4' }, `${csum}: as made, trusted`)
    // Group 0's descriptor (32 bytes at block 2): its block bitmap moved to its inode bitmap's block.
    bytes.writeUInt32LE(bytes.readUInt32LE(2048 + 4), 2048)
    t.match(await ext4FreeBlocks(read, bytes.length), { kind: 'untrusted', reason }, csum)
  }
})

t.test('a bitmap damaged with its free count kept (a used block shown free, a free one used): metadata_csum catches it', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const outcomes: Record<string, unknown> = {}
  for (const csum of ['^metadata_csum', 'metadata_csum']) {
    // The default deletions free blocks among used ones (group 4: about 900 free, its bitmap written).
    const image = makeFs(dir.path, `fs-${csum}`, 16 * MiB, ['-t', 'ext4', '-b', '1024', '-g', '1024', '-O', `^flex_bg,^64bit,${csum}`])
    const bytes = readFileSync(image)
    const read: ReadAt = async (offset, length) => bytes.subarray(offset, offset + length)
    const bitmapAt = bytes.readUInt32LE(2048 + 4 * 32) * 1024 // group 4's block bitmap (its descriptor, the fifth at block 2)
    const bit = (n: number): number => (bytes[bitmapAt + (n >>> 3)] as number) & (1 << (n & 7))
    const flip = (n: number): void => { bytes[bitmapAt + (n >>> 3)] = (bytes[bitmapAt + (n >>> 3)] as number) ^ (1 << (n & 7)) }
    // Swap a used bit (its first: the group's first metadata block) with its last free one.
    let freeBit = 1023
    while (freeBit > 0 && bit(freeBit) !== 0) freeBit--
    t.ok(bit(0) !== 0 && bit(freeBit) === 0, `${csum}: block 0 of group 4 used, ${freeBit} free`)
    flip(0)
    flip(freeBit)
    outcomes[csum] = await ext4FreeBlocks(read, bytes.length)
  }
  const unseen = JSON.stringify(outcomes['^metadata_csum']).slice(0, 160)
  t.match(outcomes['^metadata_csum'], { kind: 'ext4' }, `without checksums the damage cannot be seen: the count agrees (${unseen})`)
  t.match(outcomes['metadata_csum'], { kind: 'untrusted', reason: /group 4's block bitmap fails its checksum/ }, 'with them it is refused')
})

t.test('metadata_csum: a superblock that fails its checksum is untrusted', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const image = makeFs(dir.path, 'fs', 16 * MiB, ['-t', 'ext4', '-O', 'metadata_csum'], [])
  const bytes = readFileSync(image)
  const read: ReadAt = async (offset, length) => bytes.subarray(offset, offset + length)
  bytes[1024 + 0x78] = (bytes[1024 + 0x78] as number) ^ 0x20 // a byte of the volume name
  t.match(await ext4FreeBlocks(read, bytes.length), { kind: 'untrusted', reason: 'its superblock fails its checksum' })
})
