/**
 * Family `iso`: ConfigDrive ISO 9660 images made by the real tools (genisoimage `-R -J`, `-J`,
 * `-R` and plain, xorrisofs `-R -J`, and the agent's own buildIso9660), then changed where a
 * reader looks: a directory record's field (extent, size, length, identifier length, flags,
 * extended-attribute length, interleave), a directory pointed at itself or an ancestor (a loop), a
 * volume descriptor's field, a SUSP entry (length, CE area, NM flags, SP skip), the image cut
 * short, a metadata sector zeroed, or random bytes flipped. Each is read by readIso9660Files on the
 * case worker: it must return files within the limits or refuse with Iso9660FormatError, never
 * throw anything else nor run past the deadline; an unchanged image must read back as built.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { buildIso9660 } from '../agent/configdrive/build-iso9660.js'
import type { ConfigDriveFile } from '../agent/configdrive/config-drive-files.js'
import type { IsoCase } from './fuzz-case.js'
import { Random } from './random.js'

const SECTOR = 2048

export interface IsoFixture {
  /** The tool and its flags, e.g. `genisoimage -R -J`. */
  name: string
  image: Buffer
  /** The files as Linux shows them (what readIso9660Files must return for the unchanged image). */
  files: ConfigDriveFile[]
  /** Where the directory records and their System Use areas are, for targeted changes. */
  records: RecordSpot[]
  /** The first byte of file data: everything before it is metadata. */
  metadataBytes: number
}

export interface RecordSpot {
  at: number
  length: number
  directory: boolean
  /** The record's own extent; the directory holding it; that directory's parent (all in sectors). */
  extentLba: number
  sizeBytes: number
  directoryLba: number
  parentLba: number
  rootLba: number
  systemUseAt: number
  systemUseBytes: number
}

/** A ConfigDrive as OpenStack writes it: dated and `latest` folders, ec2, binary user data, an empty file. */
export function isoFixtureFiles (): ConfigDriveFile[] {
  const random = new Random(0x150)
  return [
    { path: 'ec2/latest/meta-data.json', data: Buffer.from('{"instance-id":"i-0001","block-device-mapping":{"ami":"sda"}}\n') },
    { path: 'openstack/2012-08-10/meta_data.json', data: Buffer.from('{"uuid":"0b9f4c1e-8a55-4d5e-9f3a-6c1d2e3f4a5b"}\n') },
    { path: 'openstack/latest/meta_data.json', data: Buffer.from('{"uuid":"0b9f4c1e-8a55-4d5e-9f3a-6c1d2e3f4a5b","hostname":"Web-01"}\n') },
    { path: 'openstack/latest/network_data.json', data: Buffer.from('{"links":[],"networks":[],"services":[]}\n') },
    { path: 'openstack/latest/user_data', data: random.bytes(5 * SECTOR + 77) },
    { path: 'openstack/latest/vendor_data2.json', data: Buffer.alloc(0) },
  ]
}

/** The tree written into `dir`, for the tools that read a folder. */
export function writeTree (dir: string, files: readonly ConfigDriveFile[]): void {
  for (const file of files) {
    mkdirSync(dirname(join(dir, file.path)), { recursive: true })
    writeFileSync(join(dir, file.path), file.data)
  }
}

/** ISO 9660 level 1 names as Linux shows them (8.3 d-characters, lower-cased): what `genisoimage` without -R/-J gives. */
function plainPath (path: string): string {
  return path.split('/').map((part, i, all) => {
    const dchars = (s: string): string => s.toLowerCase().replace(/[^a-z0-9_]/g, '_')
    if (i < all.length - 1) return dchars(part).slice(0, 8)
    const dot = part.lastIndexOf('.')
    return dot < 0 ? dchars(part).slice(0, 8) : `${dchars(part.slice(0, dot)).slice(0, 8)}.${dchars(part.slice(dot + 1)).slice(0, 3)}`
  }).join('/')
}

/** The images every `iso` case starts from, made once per run in `dir`. */
export function makeIsoFixtures (dir: string): IsoFixture[] {
  const files = isoFixtureFiles()
  const tree = join(dir, 'iso-tree')
  writeTree(tree, files)
  const tool = (name: string, command: string, args: string[], names: (path: string) => string = (p) => p): IsoFixture => {
    const out = join(dir, `${name.replace(/[^a-z0-9]+/gi, '-')}.iso`)
    execFileSync(command, [...args, '-V', 'config-2', '-o', out, tree], { stdio: 'ignore' })
    return fixture(name, readFileSync(out), files.map((f) => ({ path: names(f.path), data: f.data })))
  }
  return [
    tool('genisoimage -R -J', 'genisoimage', ['-quiet', '-R', '-J']),
    tool('genisoimage -J', 'genisoimage', ['-quiet', '-J']),
    tool('genisoimage -R', 'genisoimage', ['-quiet', '-R']),
    tool('genisoimage', 'genisoimage', ['-quiet'], plainPath),
    tool('xorrisofs -R -J', 'xorrisofs', ['-quiet', '-R', '-J']),
    fixture('buildIso9660', buildIso9660(files), files),
  ]
}

function fixture (name: string, image: Buffer, files: ConfigDriveFile[]): IsoFixture {
  const records = locateRecords(image)
  const dataStarts = records.filter((r) => !r.directory && r.sizeBytes > 0).map((r) => r.extentLba * SECTOR)
  return { name, image, files, records, metadataBytes: Math.min(image.length, ...dataStarts) }
}

/** Every directory record of the primary and Joliet trees of a well-formed image (the fixtures). */
export function locateRecords (image: Buffer): RecordSpot[] {
  const spots: RecordSpot[] = []
  for (let lba = 16; (lba + 1) * SECTOR <= image.length && image[lba * SECTOR] !== 255; lba++) {
    const d = lba * SECTOR
    if (image[d] !== 1 && !(image[d] === 2 && image[d + 88] === 0x25)) continue
    const rootLba = image.readUInt32LE(d + 156 + 2)
    const queue: Array<[number, number, number]> = [[rootLba, image.readUInt32LE(d + 156 + 10), rootLba]]
    const seen = new Set<number>()
    for (let q = queue.shift(); q !== undefined; q = queue.shift()) {
      const [extent, size, parent] = q
      if (seen.has(extent)) continue
      seen.add(extent)
      for (let pos = 0; pos < size;) {
        const at = extent * SECTOR + pos
        const length = image[at] ?? 0
        if (length === 0) { pos = (Math.floor(pos / SECTOR) + 1) * SECTOR; continue }
        const idLength = image[at + 32] ?? 0
        const directory = ((image[at + 25] ?? 0) & 2) !== 0
        const child = image.readUInt32LE(at + 2)
        const suStart = 33 + idLength + ((33 + idLength) % 2)
        spots.push({
          at, length, directory, extentLba: child, sizeBytes: image.readUInt32LE(at + 10), directoryLba: extent, parentLba: parent, rootLba,
          systemUseAt: at + suStart, systemUseBytes: Math.max(0, length - suStart),
        })
        const dot = idLength === 1 && (image[at + 33] ?? 0) <= 1
        if (directory && !dot) queue.push([child, image.readUInt32LE(at + 10), extent])
        pos += length
      }
    }
  }
  return spots
}

function writeBoth32 (image: Buffer, at: number, value: number, bothHalves: boolean): void {
  if (at + 8 > image.length) return
  image.writeUInt32LE(value >>> 0, at)
  if (bothHalves) image.writeUInt32BE(value >>> 0, at + 4)
}

function nasty (random: Random, original: number, image: Buffer, spot: RecordSpot | undefined): number {
  const sectors = Math.floor(image.length / SECTOR)
  return random.pick([
    0, 1, 15, 16, 17, original + 1, original - 1, original * 2, sectors - 1, sectors, sectors + 1, 0x7fffffff, 0xffffffff,
    image.length, image.length + 1, SECTOR - 1, SECTOR + 1, spot?.rootLba ?? 0, spot?.parentLba ?? 0, spot?.extentLba ?? 0,
  ]) >>> 0
}

type Mutation = { image: Buffer; what: string; kind: string; intact?: true }

function mutate (random: Random, base: IsoFixture): Mutation {
  const image = Buffer.from(base.image)
  const spot = random.pick(base.records)
  const kind = random.weighted<string>([
    [5, 'record'], [2, 'loop'], [3, 'descriptor'], [3, 'susp'], [2, 'truncate'], [1, 'zero-sector'], [2, 'flips'], [1, 'unchanged'],
  ])
  switch (kind) {
    case 'record': {
      const [offset, width, name] = random.pick<[number, 1 | 8, string]>([
        [0, 1, 'length'], [1, 1, 'ext_attr_length'], [2, 8, 'extent'], [10, 8, 'size'], [25, 1, 'flags'], [26, 1, 'file_unit_size'],
        [27, 1, 'interleave_gap'], [32, 1, 'identifier_length'],
      ])
      let value: number
      if (width === 8) {
        value = nasty(random, image.readUInt32LE(spot.at + offset), image, spot)
        writeBoth32(image, spot.at + offset, value, random.chance(0.8))
      } else {
        value = name === 'flags'
          ? random.pick([0, 1, 2, 4, 0x80, 0x82, 0x84, 0xff, (image[spot.at + offset] ?? 0) ^ 2])
          : random.pick([0, 1, 2, 33, 34, 35, 127, 200, 255, random.int(0, 255)])
        image[spot.at + offset] = value
      }
      return { image, what: `record@${spot.at} ${name}=${value}`, kind: `record ${name}` }
    }
    case 'loop': {
      const dirs = base.records.filter((r) => r.directory && r.extentLba !== r.parentLba)
      const target = random.pick(dirs.length > 0 ? dirs : base.records)
      const to = random.pick([target.rootLba, target.directoryLba, target.parentLba])
      writeBoth32(image, target.at + 2, to, true)
      return { image, what: `directory record@${target.at} extent=${to} (an ancestor)`, kind: 'loop' }
    }
    case 'descriptor': {
      const lba = random.pick([16, 17])
      const [offset, width, name] = random.pick<[number, 1 | 2 | 8, string]>([
        [0, 1, 'type'], [80, 8, 'volume_space_size'], [88, 1, 'escape'], [128, 2, 'logical_block_size'], [156, 1, 'root_length'],
        [156 + 2, 8, 'root_extent'], [156 + 10, 8, 'root_size'], [156 + 25, 1, 'root_flags'],
      ])
      const at = lba * SECTOR + offset
      let value: number
      if (width === 8) {
        value = nasty(random, image.readUInt32LE(at), image, undefined)
        writeBoth32(image, at, value, true)
      } else if (width === 2) {
        value = random.pick([0, 512, 1024, 2047, 4096, 65535])
        image.writeUInt16LE(value, at)
      } else {
        value = random.pick([0, 1, 2, 3, 33, 34, 255, random.int(0, 255)])
        image[at] = value
      }
      return { image, what: `descriptor@LBA${lba} ${name}=${value}`, kind: `descriptor ${name}` }
    }
    case 'susp': {
      const withSu = base.records.filter((r) => r.systemUseBytes >= 4)
      if (withSu.length === 0) return { image, what: 'no System Use area: unchanged', kind: 'unchanged', intact: true }
      const target = random.pick(withSu)
      // Walk to one entry of the area.
      let at = target.systemUseAt
      for (let hops = random.int(0, 4); hops > 0; hops--) {
        const length = image[at + 2] ?? 0
        if (length < 4 || at + length + 4 > target.systemUseAt + target.systemUseBytes) break
        at += length
      }
      const signature = image.toString('latin1', at, at + 2)
      const what = random.weighted<string>([[3, 'length'], [2, 'ce'], [1, 'nm-flags'], [1, 'sp-skip'], [1, 'signature']])
      if (what === 'ce' && signature === 'CE') {
        const field = random.pick([4, 12, 20])
        const value = nasty(random, image.readUInt32LE(at + field), image, target)
        writeBoth32(image, at + field, value, true)
        return { image, what: `CE@${at} field ${field}=${value}`, kind: 'susp CE' }
      }
      if (what === 'nm-flags' && signature === 'NM') {
        image[at + 4] = random.pick([1, 2, 4, 0x20, 0xff])
        return { image, what: `NM@${at} flags=${image[at + 4] ?? 0}`, kind: 'susp NM flags' }
      }
      if (what === 'sp-skip' && signature === 'SP') {
        image[at + 6] = random.pick([1, 4, 14, 200, 255])
        return { image, what: `SP@${at} skip=${image[at + 6] ?? 0}`, kind: 'susp SP skip' }
      }
      if (what === 'signature') {
        image.write(random.pick(['CE', 'NM', 'SL', 'RE', 'CL', 'ZF', 'ST', 'ER']), at, 'latin1')
        return { image, what: `SUSP@${at} ${signature}→${image.toString('latin1', at, at + 2)}`, kind: 'susp signature' }
      }
      image[at + 2] = random.pick([0, 1, 3, 4, 5, 254, 255])
      return { image, what: `SUSP ${signature}@${at} length=${image[at + 2] ?? 0}`, kind: 'susp length' }
    }
    case 'truncate': {
      const sectors = Math.floor(image.length / SECTOR)
      const cut = random.pick([random.int(0, image.length - 1), random.int(16, sectors - 1) * SECTOR, base.metadataBytes, image.length - 1])
      return { image: image.subarray(0, cut), what: `cut at ${cut} of ${image.length}`, kind: 'truncated' }
    }
    case 'zero-sector': {
      const lba = random.int(16, Math.max(16, Math.floor(base.metadataBytes / SECTOR) - 1))
      image.fill(0, lba * SECTOR, (lba + 1) * SECTOR)
      return { image, what: `LBA ${lba} zeroed`, kind: 'zero sector' }
    }
    case 'flips': {
      const count = random.int(1, 16)
      for (let n = 0; n < count; n++) image[random.int(16 * SECTOR, Math.max(16 * SECTOR, base.metadataBytes - 1))] = random.int(0, 255)
      return { image, what: `${count} random bytes in the metadata`, kind: 'random flips' }
    }
    default:
      return { image, what: 'unchanged', kind: 'unchanged', intact: true }
  }
}

export function isoCase (index: number, random: Random, fixtures: readonly IsoFixture[]): IsoCase {
  const base = random.pick(fixtures)
  const mutation = mutate(random, base)
  return {
    id: `iso-${index}`,
    family: 'iso',
    index,
    label: `${base.name}: ${mutation.what}`,
    kind: mutation.kind,
    image: mutation.image,
    expected: mutation.intact === true ? base.files : undefined,
    mode: 'read',
  }
}
