import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { buildIso9660 } from '../../../agent/configdrive/build-iso9660.js'
import type { ConfigDriveFile } from '../../../agent/configdrive/config-drive-files.js'
import { Iso9660FormatError, readIso9660Files, type Iso9660Names } from '../../../agent/configdrive/read-iso9660.js'
import { isoCase, isoFixtureFiles, locateRecords, makeIsoFixtures, writeTree, type RecordSpot } from '../../../fuzz/iso-cases.js'
import { Random } from '../../../fuzz/random.js'
import { tempDir } from '../../helpers/disk-files.js'
import type { TapTest } from '../../helpers/tap.js'
import { cloudInitRead, run } from './referees.js'

/**
 * readIso9660Files against images made by the real tools (genisoimage, xorrisofs) and by our own
 * buildIso9660, with xorriso's extraction (an independent reader) and cloud-init's own ConfigDrive
 * reader as referees; then hostile images, each refused with Iso9660FormatError.
 */

const tmp = tempDir('byoi-read-iso-')
t.teardown(tmp.remove)

const fixtures = makeIsoFixtures(tmp.path)
const SECTOR = 2048

function sorted (files: readonly ConfigDriveFile[]): Array<[string, string]> {
  return files.map((f): [string, string] => [f.path, f.data.toString('hex')]).sort((a, b) => (a[0] < b[0] ? -1 : 1))
}

/** Every regular file under `dir`, as ConfigDriveFiles. */
function treeFiles (dir: string, under = dir): ConfigDriveFile[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? treeFiles(path, under) : [{ path: relative(under, path), data: readFileSync(path) }]
  })
}

/** xorriso's own reading of the image: `-osirrox on -extract / DIR`. */
function xorrisoExtract (image: Buffer, name: string): ConfigDriveFile[] {
  const dir = join(tmp.path, `x-${name.replace(/[^a-z0-9]+/gi, '-')}`)
  const iso = `${dir}.iso`
  execFileSync('dd', [`of=${iso}`, 'status=none'], { input: image })
  const out = run('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/', dir])
  if (out.status !== 0) throw new Error(`xorriso -extract failed: ${out.stderr}`)
  return treeFiles(dir)
}

function refused (t: TapTest, image: Buffer, pattern: RegExp, message: string, limits = {}): void {
  let caught: unknown
  try {
    readIso9660Files(image, limits)
  } catch (err) {
    caught = err
  }
  t.ok(caught instanceof Iso9660FormatError, `${message}: Iso9660FormatError (got ${String(caught)})`)
  if (caught instanceof Error) t.match(caught.message, pattern, message)
}

const NAMES: Record<string, Iso9660Names> = {
  'genisoimage -R -J': 'rock-ridge',
  'genisoimage -J': 'joliet',
  'genisoimage -R': 'rock-ridge',
  genisoimage: 'iso9660',
  'xorrisofs -R -J': 'rock-ridge',
  buildIso9660: 'rock-ridge',
}

for (const fixture of fixtures) {
  t.test(`${fixture.name}: every file and name as put in, as xorriso reads them`, async (t) => {
    const read = readIso9660Files(fixture.image)
    t.equal(read.volumeId, 'config-2')
    t.equal(read.names, NAMES[fixture.name])
    t.same(sorted(read.files), sorted(fixture.files), 'the files, name for name and byte for byte')
    // xorriso shows the plain tree's identifiers in upper case; Linux (map=normal) lower-cases them.
    const referee = xorrisoExtract(fixture.image, fixture.name)
      .map((f) => ({ path: read.names === 'iso9660' ? f.path.toLowerCase() : f.path, data: f.data }))
    t.same(sorted(read.files), sorted(referee), 'the same as xorriso -extract')
  })
}

t.test('the real ConfigDrive names survive every extension that can hold them', async (t) => {
  const names = isoFixtureFiles().map((f) => f.path).sort()
  t.same(names, [
    'ec2/latest/meta-data.json', 'openstack/2012-08-10/meta_data.json', 'openstack/latest/meta_data.json',
    'openstack/latest/network_data.json', 'openstack/latest/user_data', 'openstack/latest/vendor_data2.json',
  ])
  const userData = isoFixtureFiles().find((f) => f.path.endsWith('user_data'))?.data ?? Buffer.alloc(0)
  t.ok(userData.length > SECTOR && new Set(userData).size > 200, 'user_data: binary, over one sector')
})

t.test('Rock Ridge wins over Joliet, Joliet over the plain names (as Linux and xorriso show them)', async (t) => {
  // Joliet holds 64 characters (genisoimage cuts longer names), Rock Ridge the whole name.
  const long = `Mixed-Case_${'x'.repeat(60)}.Name-With-Dashes.json`
  const files = [{ path: `openstack/latest/${long}`, data: Buffer.from('long\n') }, { path: 'openstack/latest/user_data', data: Buffer.from('#!/bin/sh\n') }]
  const tree = join(tmp.path, 'long-tree')
  writeTree(tree, files)
  const make = (name: string, args: string[]): Buffer => {
    const out = join(tmp.path, `${name}.iso`)
    execFileSync('genisoimage', ['-quiet', ...args, '-V', 'config-2', '-o', out, tree], { stdio: 'ignore' })
    return readFileSync(out)
  }
  const both = readIso9660Files(make('long-rj', ['-R', '-J']))
  t.equal(both.names, 'rock-ridge')
  t.ok(both.files.some((f) => f.path === `openstack/latest/${long}`), 'Rock Ridge: the whole name')
  t.same(sorted(both.files), sorted(xorrisoExtract(make('long-rj', ['-R', '-J']), 'long-rj')), 'as xorriso')
  const joliet = readIso9660Files(make('long-j', ['-J']))
  t.equal(joliet.names, 'joliet')
  t.ok(joliet.files.some((f) => f.path === `openstack/latest/${long.slice(0, 64)}`), 'Joliet: 64 characters, case and dashes kept')
  t.same(sorted(joliet.files), sorted(xorrisoExtract(make('long-j', ['-J']), 'long-j')), 'as xorriso')
})

t.test('a directory spanning several sectors (records padded to the next sector by zero length bytes)', async (t) => {
  const files = Array.from({ length: 90 }, (_, i) => ({
    path: `openstack/content/file-${String(i).padStart(3, '0')}-with-a-long-name.json`,
    data: Buffer.from(`${i}\n`),
  }))
  for (const [name, image] of [['buildIso9660', buildIso9660(files)], ['genisoimage', (() => {
    const tree = join(tmp.path, 'wide-tree')
    writeTree(tree, files)
    execFileSync('genisoimage', ['-quiet', '-R', '-J', '-V', 'config-2', '-o', `${tree}.iso`, tree], { stdio: 'ignore' })
    return readFileSync(`${tree}.iso`)
  })()]] as const) {
    const dir = locateRecords(image).find((r) => r.directory && r.sizeBytes > SECTOR)
    t.ok(dir !== undefined, `${name}: a directory over ${SECTOR} bytes`)
    t.same(sorted(readIso9660Files(image).files), sorted(files), `${name}: all 90 files`)
  }
})

t.test('cloud-init reads the same drive from our files as from xorriso\'s', async (t) => {
  const fixture = fixtures.find((f) => f.name === 'genisoimage -R -J')
  if (fixture === undefined) throw new Error('no fixture')
  const ours = join(tmp.path, 'cloud-init-ours')
  mkdirSync(ours)
  writeTree(ours, readIso9660Files(fixture.image).files)
  const theirs = join(tmp.path, 'cloud-init-xorriso')
  run('xorriso', ['-osirrox', 'on', '-indev', join(tmp.path, 'genisoimage-R-J.iso'), '-extract', '/', theirs])
  const seen = cloudInitRead(ours)
  t.same(seen, cloudInitRead(theirs))
  t.equal(seen.metadata.uuid, '0b9f4c1e-8a55-4d5e-9f3a-6c1d2e3f4a5b')
})

t.test('limits: file bytes, entries and depth', async (t) => {
  const image = fixtures.find((f) => f.name === 'buildIso9660')?.image ?? Buffer.alloc(0)
  refused(t, image, /takes the files past 1000 bytes/, 'maxFileBytes', { maxFileBytes: 1000 })
  refused(t, image, /more than 4 entries/, 'maxEntries', { maxEntries: 4 })
  refused(t, image, /nested deeper than 1/, 'maxDepth', { maxDepth: 1 })
  t.equal(readIso9660Files(image, { maxDepth: 2, maxEntries: 11 }).files.length, 6, 'exactly at the limits')
  t.throws(() => readIso9660Files(image, { maxDepth: -1 }), RangeError, 'a malformed limit is a RangeError')
})

// ---------------------------------------------------------------------------------------------
// Hostile images, made from our own (whose layout the fuzz helper locates).

const base = buildIso9660(isoFixtureFiles())
const spots = locateRecords(base)
const root = spots[0] as RecordSpot
/** The primary tree's record whose identifier starts with `id` (in the directory at `directoryLba`). */
function spot (id: string, directoryLba?: number): RecordSpot {
  const found = spots.find((s) => s.rootLba === root.rootLba && (directoryLba === undefined || s.directoryLba === directoryLba) &&
    base.toString('latin1', s.at + 33, s.at + 33 + id.length) === id)
  if (found === undefined) throw new Error(`no record ${id}`)
  return found
}
function changed (edit: (image: Buffer) => void): Buffer {
  const image = Buffer.from(base)
  edit(image)
  return image
}
function both32 (image: Buffer, at: number, value: number): void {
  image.writeUInt32LE(value, at)
  image.writeUInt32BE(value, at + 4)
}

t.test('not ISO 9660, or cut short: refused', async (t) => {
  refused(t, Buffer.alloc(0), /no primary volume descriptor/, 'an empty buffer')
  refused(t, Buffer.alloc(64 * 1024), /not ISO 9660: no "CD001" at byte 32769/, 'zeros')
  for (const cut of [16 * SECTOR + 100, 18 * SECTOR, Math.floor(base.length / 2), base.length - SECTOR, base.length - 1]) {
    refused(t, base.subarray(0, cut), /cut short|past the end|no primary/, `cut at ${cut}`)
  }
  // Cut, with the volume size made to agree: the reader's own bounds checks must catch it.
  for (let cut = 17 * SECTOR; cut < base.length; cut += SECTOR) {
    const image = Buffer.from(base.subarray(0, cut))
    both32(image, 16 * SECTOR + 80, cut / SECTOR)
    try {
      readIso9660Files(image)
      t.fail(`cut at ${cut}: the file data lies past it, yet it read`)
    } catch (err) {
      if (!(err instanceof Iso9660FormatError)) throw err
    }
  }
})

t.test('a directory extent past the end, a loop, huge sizes: refused with the byte offset', async (t) => {
  const openstack = spot('OPENSTACK')
  const latest = spot('LATEST', openstack.extentLba)
  const userData = spot('USER_DATA')
  refused(t, changed((i) => both32(i, openstack.at + 2, 0xffffff)),
    new RegExp(`directory /openstack \\(record at byte ${openstack.at}\\) at byte \\d+ .* past the end`), 'extent past the end')
  refused(t, changed((i) => both32(i, latest.at + 2, root.rootLba)),
    new RegExp(`record at byte ${latest.at}: directory /openstack/latest points at byte ${root.rootLba * SECTOR}, a directory already read \\(a loop\\)`),
    'loop to the root')
  refused(t, changed((i) => both32(i, latest.at + 2, latest.directoryLba)), /a loop/, 'loop to its own parent')
  refused(t, changed((i) => both32(i, userData.at + 10, 0xffffffff)), /takes the files past 67108864 bytes/, 'a 4 GiB file')
  refused(t, changed((i) => both32(i, userData.at + 10, 60 * 1024 * 1024)),
    /the data of \/openstack\/latest\/user_data \(record at byte \d+\) .* past the end/, 'a 60 MiB file')
  refused(t, changed((i) => both32(i, openstack.at + 10, 0xfffff800)), /past the end/, 'a 4 GiB directory')
  refused(t, changed((i) => both32(i, openstack.at + 10, 0)), /has size 0/, 'a directory of size 0')
  refused(t, changed((i) => { i[userData.at] = 20 }), new RegExp(`record at byte ${userData.at}: length 20, less than 34`), 'a record of 20 bytes')
  refused(t, changed((i) => { i[userData.at + 32] = 250 }), /identifier overruns/, 'an identifier longer than its record')
  refused(t, changed((i) => { i[userData.at + 27] = 1 }), new RegExp(`record at byte ${userData.at}: an interleaved file`), 'interleaved')
  refused(t, changed((i) => both32(i, 16 * SECTOR + 80, 1e6)), /the volume is 2048000000 bytes \(byte 80\)/, 'volume space size past the image')
  refused(t, changed((i) => { i.writeUInt16LE(512, 16 * SECTOR + 128) }), /logical block size 512/, 'a 512-byte block size')
  const rootDot = spots.find((s) => s.at === root.rootLba * SECTOR) as RecordSpot
  const ce = base.indexOf('CE', rootDot.systemUseAt, 'latin1')
  refused(t, changed((i) => both32(i, ce + 4, 0xffffff)), /SUSP continuation area \(CE entry at byte \d+\) .* past the end/, 'CE area past the end')
})

t.test('associated files are skipped, as Linux hides them', async (t) => {
  const image = changed((i) => { i[spot('USER_DATA').at + 25] = 0x04 })
  const paths = readIso9660Files(image).files.map((f) => f.path)
  t.notOk(paths.includes('openstack/latest/user_data'))
  t.equal(paths.length, 5)
})

/** Rewrites the records of the directory sector holding `record`: `edit` gets and returns them. */
function repack (image: Buffer, record: RecordSpot, edit: (records: Buffer[]) => Buffer[]): void {
  const start = Math.floor(record.at / SECTOR) * SECTOR
  const records: Buffer[] = []
  for (let pos = start; pos < start + SECTOR && (image[pos] ?? 0) > 0; pos += image[pos] ?? 0) {
    records.push(Buffer.from(image.subarray(pos, pos + (image[pos] ?? 0))))
  }
  const out = Buffer.concat(edit(records))
  if (out.length > SECTOR) throw new Error('the records do not fit')
  image.fill(0, start, start + SECTOR)
  out.copy(image, start)
}

t.test('a multi-extent file is read whole; a part without its final record is refused', async (t) => {
  const userData = spot('USER_DATA')
  const want = isoFixtureFiles().find((f) => f.path.endsWith('user_data'))?.data ?? Buffer.alloc(0)
  const split = (keepLast: boolean): Buffer => changed((image) => repack(image, userData, (records) => records.flatMap((r) => {
    if (r.toString('latin1', 33, 42) !== 'USER_DATA') return [r]
    const first = Buffer.from(r)
    first[25] = (first[25] ?? 0) | 0x80
    both32(first, 10, 2 * SECTOR)
    const last = Buffer.from(r)
    both32(last, 2, r.readUInt32LE(2) + 2)
    both32(last, 10, r.readUInt32LE(10) - 2 * SECTOR)
    return keepLast ? [first, last] : [first]
  })))
  const read = readIso9660Files(split(true)).files.find((f) => f.path === 'openstack/latest/user_data')
  t.ok(read?.data.equals(want), 'user_data from its two extents')
  refused(t, split(false), /the multi-extent file at byte \d+ ends under another name/, 'the final record missing')
})

t.test('a relocated directory (Rock Ridge CL, genisoimage -R past 8 levels) is refused by name', async (t) => {
  const deep = join(tmp.path, 'deep-tree')
  writeTree(deep, [{ path: 'a/b/c/d/e/f/g/h/i/j/file', data: Buffer.from('deep\n') }])
  execFileSync('genisoimage', ['-quiet', '-R', '-o', `${deep}.iso`, deep], { stdio: 'ignore' })
  refused(t, readFileSync(`${deep}.iso`), /relocated directory \(Rock Ridge CL\)|nested deeper than 8/, 'refused', { maxDepth: 20 })
})

t.test('seeded mutations of the tool-built images: files or Iso9660FormatError, never another error', async (t) => {
  const results = new Map<string, number>()
  for (let index = 0; index < 600; index++) {
    const c = isoCase(index, new Random(index * 7919 + 1), fixtures)
    let result: string
    try {
      const read = readIso9660Files(c.image)
      result = 'read'
      if (c.expected !== undefined) t.same(sorted(read.files), sorted(c.expected), `${c.id} ${c.label}: unchanged, read as built`)
    } catch (err) {
      if (!(err instanceof Iso9660FormatError)) {
        t.fail(`${c.id} ${c.label}: ${String(err)}`)
        continue
      }
      t.match(err.message, /byte \d+|limit|ISO 9660|descriptor/, `${c.id}: the message says where`)
      result = 'refused'
    }
    results.set(result, (results.get(result) ?? 0) + 1)
  }
  t.comment(`600 mutations: ${[...results].map(([k, v]) => `${k} ${v}`).join(', ')}`)
  t.ok((results.get('refused') ?? 0) > 100, 'most are refused')
})
