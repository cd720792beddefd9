import type { ConfigDriveFile } from './config-drive-files.js'
import { buildTree, type TreeDirectory, type TreeFile, type TreeNode } from './file-tree.js'
import { DEFAULT_TIMESTAMP, checkTimestamp } from './timestamp.js'

/**
 * ISO 9660 (ECMA-119) with Rock Ridge (SUSP 1.12 / RRIP 1.12) and Joliet, laid out as
 * `genisoimage -R -J -V config-2` lays it out: system area, PVD at 16, Joliet SVD at 17, terminator,
 * the four path tables, the Rock Ridge ER continuation, the primary then the Joliet directories,
 * then the file data (each extent shared by both trees).
 *
 * Linux (fs/isofs) shows the Rock Ridge NM name when the root "." carries SP and ER, else the Joliet
 * name, else the primary identifier lower-cased. Rock Ridge and Joliet hold the names as given; the
 * primary identifiers are level-2 d-character names, for readers that know neither extension.
 */

export const ISO_SECTOR_BYTES = 2048 // ECMA-119 6.1.2: logical block size
export const PVD_LBA = 16 // ECMA-119 6.2.1: after the 16-sector system area
const SVD_LBA = 17
const TERMINATOR_LBA = 18
const FIRST_FREE_LBA = 19

/** The largest image this writer makes: a ConfigDrive partition is at most 64 MiB. */
export const MAX_ISO_BYTES = 64 * 1024 * 1024 // 64 MiB

export interface BuildIso9660Options {
  /**
   * Volume identifier, 1 to 16 printable ASCII characters (the Joliet copy holds 16 UCS-2 characters
   * and blkid prefers it when the two differ); `config-2` by default, the label cloud-init looks for.
   */
  volumeId?: string
  /** Every date in the image (UTC); `DEFAULT_TIMESTAMP` by default. */
  timestamp?: Date
}

/** RRIP 1.12 ER entry, as genisoimage writes it (fs/isofs accepts any ER; tools look for this id). */
const ER_ID = 'RRIP_1991A'
const ER_DESCRIPTOR = 'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS'
const ER_SOURCE = 'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.'

const MODE_DIRECTORY = 0o40555 // POSIX S_IFDIR | r-xr-xr-x
const MODE_FILE = 0o100444 // POSIX S_IFREG | r--r--r--

interface Entry {
  node: TreeNode
  identifier: Buffer
}

interface LaidDirectory {
  node: TreeDirectory
  /** Index in this tree's breadth-first list; path table directory number is index + 1. */
  index: number
  parentIndex: number
  identifier: Buffer
  entries: Entry[]
  sizeBytes: number
  lba: number
}

/** Identifiers of the children of one directory, unique within it, in the order they are recorded. */
type Naming = (children: readonly TreeNode[]) => Entry[]

/** Builds the image. Pure: the same files and options give the same bytes. */
export function buildIso9660 (files: ConfigDriveFile[], options: BuildIso9660Options = {}): Buffer {
  const volumeId = options.volumeId ?? 'config-2'
  if (!/^[\u0020-\u007e]{1,16}$/.test(volumeId)) {
    throw new RangeError(`ISO 9660 volume id must be 1 to 16 printable ASCII characters, got ${JSON.stringify(volumeId)}`)
  }
  const timestamp = checkTimestamp(options.timestamp ?? DEFAULT_TIMESTAMP)
  const tree = buildTree(files)

  const primary = layDirectories(tree, primaryNames)
  const joliet = layDirectories(tree, jolietNames)

  // Sizes first (record lengths do not depend on where things go), then places.
  for (const dir of primary) dir.sizeBytes = directorySize(dir, primary, false)
  for (const dir of joliet) dir.sizeBytes = directorySize(dir, joliet, true)
  const primaryPathTable = pathTableBytes(primary)
  const jolietPathTable = pathTableBytes(joliet)

  let lba = FIRST_FREE_LBA
  const take = (bytes: number): number => {
    const at = lba
    lba += Math.ceil(bytes / ISO_SECTOR_BYTES)
    return at
  }
  const primaryL = take(primaryPathTable)
  const primaryM = take(primaryPathTable)
  const jolietL = take(jolietPathTable)
  const jolietM = take(jolietPathTable)
  const continuationLba = take(ISO_SECTOR_BYTES)
  for (const dir of primary) dir.lba = take(dir.sizeBytes)
  for (const dir of joliet) dir.lba = take(dir.sizeBytes)
  const fileLba = new Map<TreeFile, number>()
  for (const file of filesDepthFirst(tree)) {
    // An empty file takes no sector; its extent is where the next one starts, as genisoimage does.
    fileLba.set(file, take(file.data.length))
  }
  const totalSectors = lba
  const totalBytes = totalSectors * ISO_SECTOR_BYTES
  if (totalBytes > MAX_ISO_BYTES) throw new RangeError(`ISO 9660 image would be ${totalBytes} bytes, more than ${MAX_ISO_BYTES}`)

  const image = Buffer.alloc(totalBytes)
  const ctx: WriteContext = { image, timestamp, fileLba, continuationLba }

  writeVolumeDescriptor(image, PVD_LBA, {
    joliet: false, volumeId, totalSectors, pathTableBytes: primaryPathTable, lPathLba: primaryL, mPathLba: primaryM, root: primary[0], timestamp,
  })
  writeVolumeDescriptor(image, SVD_LBA, {
    joliet: true, volumeId, totalSectors, pathTableBytes: jolietPathTable, lPathLba: jolietL, mPathLba: jolietM, root: joliet[0], timestamp,
  })
  // ECMA-119 8.3: Volume Descriptor Set Terminator.
  const terminator = TERMINATOR_LBA * ISO_SECTOR_BYTES
  image[terminator] = 255 // type 255: terminator
  image.write('CD001', terminator + 1, 'latin1') // standard identifier
  image[terminator + 6] = 1 // version

  writePathTables(image, primary, primaryL, primaryM)
  writePathTables(image, joliet, jolietL, jolietM)
  writeContinuationArea(image, continuationLba)
  for (const dir of primary) writeDirectory(ctx, dir, primary, false)
  for (const dir of joliet) writeDirectory(ctx, dir, joliet, true)
  for (const [file, at] of fileLba) file.data.copy(image, at * ISO_SECTOR_BYTES)
  return image
}

// ---------------------------------------------------------------------------------------------
// Names

/**
 * Primary identifiers (ECMA-119 7.5, interchange level 2): d-characters (A-Z 0-9 _), at most 30
 * characters for name + extension, `;1` version; directories at most 31 characters, no dot.
 * Clashes get a numeric tail. Children are recorded in identifier order (9.3).
 */
function primaryNames (children: readonly TreeNode[]): Entry[] {
  const used = new Set<string>()
  const entries = children.map((node) => {
    const dchars = (text: string): string => text.toUpperCase().replace(/[^A-Z0-9_]/g, '_')
    let base: string
    let extension: string | undefined
    if (node.kind === 'directory') {
      base = dchars(node.name).slice(0, 31)
    } else {
      const dot = node.name.lastIndexOf('.')
      extension = dot > 0 ? dchars(node.name.slice(dot + 1)).slice(0, 8) : ''
      base = dchars(dot > 0 ? node.name.slice(0, dot) : node.name).slice(0, 30 - extension.length)
    }
    const spell = (b: string): string => (extension === undefined ? b : `${b}.${extension};1`)
    let candidate = spell(base)
    for (let n = 1; used.has(candidate); n++) {
      const tail = String(n)
      candidate = spell(base.slice(0, (extension === undefined ? 31 : 30 - extension.length) - tail.length) + tail)
    }
    used.add(candidate)
    return { node, identifier: Buffer.from(candidate, 'latin1') }
  })
  return entries.sort((a, b) => comparePrimary(a.identifier.toString('latin1'), b.identifier.toString('latin1')))
}

/** ECMA-119 9.3: file names compared padded with spaces, then extensions, then versions. */
function comparePrimary (a: string, b: string): number {
  const split = (id: string): [string, string] => {
    const bare = id.replace(/;1$/, '')
    const dot = bare.indexOf('.')
    return dot < 0 ? [bare, ''] : [bare.slice(0, dot), bare.slice(dot + 1)]
  }
  const [an, ae] = split(a)
  const [bn, be] = split(b)
  const pad = (x: string, n: number): string => x.padEnd(n, ' ')
  const width = Math.max(an.length, bn.length)
  const byName = compareStrings(pad(an, width), pad(bn, width))
  if (byName !== 0) return byName
  const extWidth = Math.max(ae.length, be.length)
  return compareStrings(pad(ae, extWidth), pad(be, extWidth))
}

function compareStrings (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Joliet identifiers: the name in UCS-2 big-endian (file-tree keeps names ≤ 64 BMP characters). */
function jolietNames (children: readonly TreeNode[]): Entry[] {
  return children
    .map((node) => ({ node, identifier: ucs2be(node.name) }))
    .sort((a, b) => Buffer.compare(a.identifier, b.identifier))
}

function ucs2be (text: string): Buffer {
  const out = Buffer.alloc(text.length * 2)
  for (let i = 0; i < text.length; i++) out.writeUInt16BE(text.charCodeAt(i), i * 2)
  return out
}

// ---------------------------------------------------------------------------------------------
// Layout

/** The tree's directories in breadth-first order (the path table order, ECMA-119 9.4). */
function layDirectories (root: TreeDirectory, name: Naming): LaidDirectory[] {
  const out: LaidDirectory[] = [{ node: root, index: 0, parentIndex: 0, identifier: Buffer.from([0]), entries: name(root.children), sizeBytes: 0, lba: 0 }]
  for (let i = 0; i < out.length; i++) {
    const dir = out[i]
    if (dir === undefined) break
    for (const entry of dir.entries) {
      if (entry.node.kind !== 'directory') continue
      out.push({ node: entry.node, index: out.length, parentIndex: i, identifier: entry.identifier, entries: name(entry.node.children), sizeBytes: 0, lba: 0 })
    }
  }
  return out
}

function filesDepthFirst (dir: TreeDirectory): TreeFile[] {
  const out: TreeFile[] = []
  for (const child of dir.children) {
    if (child.kind === 'file') out.push(child)
    else out.push(...filesDepthFirst(child))
  }
  return out
}

function subdirectoryCount (dir: TreeDirectory): number {
  return dir.children.filter((child) => child.kind === 'directory').length
}

/** Directory records never cross a sector (ECMA-119 6.8.1.1); the extent is whole sectors. */
function directorySize (dir: LaidDirectory, all: readonly LaidDirectory[], joliet: boolean): number {
  const lengths = directoryRecordLengths(dir, all, joliet)
  let offset = 0
  for (const length of lengths) {
    if ((offset % ISO_SECTOR_BYTES) + length > ISO_SECTOR_BYTES) offset = Math.ceil(offset / ISO_SECTOR_BYTES) * ISO_SECTOR_BYTES
    offset += length
  }
  return Math.max(1, Math.ceil(offset / ISO_SECTOR_BYTES)) * ISO_SECTOR_BYTES
}

function directoryRecordLengths (dir: LaidDirectory, all: readonly LaidDirectory[], joliet: boolean): number[] {
  // Sizes only: the records are made with placeholder extents.
  const ctx: WriteContext = { image: Buffer.alloc(0), timestamp: DEFAULT_TIMESTAMP, fileLba: new Map(), continuationLba: 0 }
  return directoryRecords(ctx, dir, all, joliet).map((record) => record.length)
}

// ---------------------------------------------------------------------------------------------
// Writing

interface WriteContext {
  image: Buffer
  timestamp: Date
  fileLba: Map<TreeFile, number>
  continuationLba: number
}

/** ECMA-119 7.2.3 / 7.3.3: both-byte orders, little-endian copy first. */
function writeBoth16 (buf: Buffer, offset: number, value: number): void {
  buf.writeUInt16LE(value, offset)
  buf.writeUInt16BE(value, offset + 2)
}

function writeBoth32 (buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32LE(value, offset)
  buf.writeUInt32BE(value, offset + 4)
}

/** ECMA-119 9.1.5: recording date and time, 7 bytes (years since 1900 … GMT offset). */
function date7 (date: Date): Buffer {
  return Buffer.from([
    date.getUTCFullYear() - 1900, date.getUTCMonth() + 1, date.getUTCDate(),
    date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds(),
    0, // GMT offset in 15-minute units
  ])
}

/** ECMA-119 8.4.26.1: "YYYYMMDDHHMMSScc" digits and a GMT offset byte; all zero means unset. */
function date17 (date: Date | undefined): Buffer {
  const out = Buffer.alloc(17, 0x30) // '0'
  out[16] = 0
  if (date === undefined) return out
  const two = (n: number): string => String(n).padStart(2, '0')
  const text = `${String(date.getUTCFullYear()).padStart(4, '0')}${two(date.getUTCMonth() + 1)}${two(date.getUTCDate())}` +
    `${two(date.getUTCHours())}${two(date.getUTCMinutes())}${two(date.getUTCSeconds())}00`
  out.write(text, 0, 'latin1')
  return out
}

/** SUSP/RRIP entries (signature, length, version 1, data). */
function suspEntry (signature: string, data: Buffer): Buffer {
  const head = Buffer.alloc(4)
  head.write(signature, 0, 'latin1')
  head[2] = 4 + data.length // SUSP 4.1: length of the whole entry
  head[3] = 1 // entry version
  return Buffer.concat([head, data])
}

/** RRIP 4.1.1 PX: mode, links, uid, gid (RRIP 1.09 length 36, what genisoimage writes). */
function px (mode: number, links: number): Buffer {
  const data = Buffer.alloc(32)
  writeBoth32(data, 0, mode)
  writeBoth32(data, 8, links)
  writeBoth32(data, 16, 0) // uid
  writeBoth32(data, 24, 0) // gid
  return suspEntry('PX', data)
}

/** RRIP 4.1.6 TF: modify, access and attribute-change times, 7-byte form. */
function tf (date: Date): Buffer {
  const stamp = date7(date)
  return suspEntry('TF', Buffer.concat([Buffer.from([0x0e]), stamp, stamp, stamp])) // flags: MODIFY|ACCESS|ATTRIBUTES
}

/** RRIP 1.09 RR: which RRIP entries the record carries. */
function rr (flags: number): Buffer {
  return suspEntry('RR', Buffer.from([flags]))
}
const RR_PX = 0x01
const RR_NM = 0x08
const RR_TF = 0x80

/** RRIP 4.1.4 NM: the POSIX name (flags 0: complete in this entry). */
function nm (name: string): Buffer {
  return suspEntry('NM', Buffer.concat([Buffer.from([0]), Buffer.from(name, 'utf8')]))
}

/** SUSP 5.3 SP: on the root "." only, marks SUSP in use; 0xBE 0xEF check bytes, 0 bytes skipped. */
function sp (): Buffer {
  return suspEntry('SP', Buffer.from([0xbe, 0xef, 0]))
}

/** SUSP 5.1 CE: the rest of the System Use area is in a continuation area. */
function ce (lba: number, length: number): Buffer {
  const data = Buffer.alloc(24)
  writeBoth32(data, 0, lba)
  writeBoth32(data, 8, 0) // offset in that sector
  writeBoth32(data, 16, length)
  return suspEntry('CE', data)
}

/** SUSP 5.5 ER: the extension (RRIP) in use; too long for the root record, so in the CE area. */
function er (): Buffer {
  const head = Buffer.from([ER_ID.length, ER_DESCRIPTOR.length, ER_SOURCE.length, 1]) // LEN_ID, LEN_DES, LEN_SRC, EXT_VER
  return suspEntry('ER', Buffer.concat([head, Buffer.from(ER_ID + ER_DESCRIPTOR + ER_SOURCE, 'latin1')]))
}

function writeContinuationArea (image: Buffer, lba: number): void {
  er().copy(image, lba * ISO_SECTOR_BYTES)
}

/** ECMA-119 9.1: one directory record (33 bytes + identifier + pad + system use), even length. */
function directoryRecord (fields: { lba: number; sizeBytes: number; date: Date; directory: boolean; identifier: Buffer; systemUse: Buffer }): Buffer {
  const idLength = fields.identifier.length
  const pad = idLength % 2 === 0 ? 1 : 0 // 9.1.12: padding field after an even-length identifier
  let length = 33 + idLength + pad + fields.systemUse.length
  if (length % 2 === 1) length++
  if (length > 255) throw new RangeError('ISO 9660 directory record longer than 255 bytes')
  const record = Buffer.alloc(length)
  record[0] = length // 9.1.1: length of directory record
  record[1] = 0 // 9.1.2: extended attribute record length
  writeBoth32(record, 2, fields.lba) // 9.1.3: location of extent
  writeBoth32(record, 10, fields.sizeBytes) // 9.1.4: data length
  date7(fields.date).copy(record, 18) // 9.1.5: recording date and time
  record[25] = fields.directory ? 0x02 : 0x00 // 9.1.6: file flags, bit 1 = directory
  writeBoth16(record, 28, 1) // 9.1.9: volume sequence number
  record[32] = idLength // 9.1.10: length of file identifier
  fields.identifier.copy(record, 33)
  fields.systemUse.copy(record, 33 + idLength + pad)
  return record
}

const RRIP_ER_LENGTH = er().length

function directoryRecords (ctx: WriteContext, dir: LaidDirectory, all: readonly LaidDirectory[], joliet: boolean): Buffer[] {
  const parent = all[dir.parentIndex] ?? dir
  const date = ctx.timestamp
  const suDot = joliet
    ? Buffer.alloc(0)
    : Buffer.concat([
      ...(dir.index === 0 ? [sp()] : []),
      rr(RR_PX | RR_TF), px(MODE_DIRECTORY, 2 + subdirectoryCount(dir.node)), tf(date),
      ...(dir.index === 0 ? [ce(ctx.continuationLba, RRIP_ER_LENGTH)] : []),
    ])
  const suDotDot = joliet ? Buffer.alloc(0) : Buffer.concat([rr(RR_PX | RR_TF), px(MODE_DIRECTORY, 2 + subdirectoryCount(parent.node)), tf(date)])
  const records = [
    directoryRecord({ lba: dir.lba, sizeBytes: dir.sizeBytes, date, directory: true, identifier: Buffer.from([0]), systemUse: suDot }),
    directoryRecord({ lba: parent.lba, sizeBytes: parent.sizeBytes, date, directory: true, identifier: Buffer.from([1]), systemUse: suDotDot }),
  ]
  for (const entry of dir.entries) {
    const node = entry.node
    let lba: number
    let sizeBytes: number
    if (node.kind === 'directory') {
      const child = all.find((d) => d.node === node)
      lba = child?.lba ?? 0
      sizeBytes = child?.sizeBytes ?? 0
    } else {
      lba = ctx.fileLba.get(node) ?? 0
      sizeBytes = node.data.length
    }
    const systemUse = joliet
      ? Buffer.alloc(0)
      : Buffer.concat([
        rr(RR_PX | RR_NM | RR_TF), nm(node.name),
        node.kind === 'directory' ? px(MODE_DIRECTORY, 2 + subdirectoryCount(node)) : px(MODE_FILE, 1),
        tf(date),
      ])
    records.push(directoryRecord({ lba, sizeBytes, date, directory: node.kind === 'directory', identifier: entry.identifier, systemUse }))
  }
  return records
}

function writeDirectory (ctx: WriteContext, dir: LaidDirectory, all: readonly LaidDirectory[], joliet: boolean): void {
  const start = dir.lba * ISO_SECTOR_BYTES
  let offset = 0
  for (const record of directoryRecords(ctx, dir, all, joliet)) {
    // A record that would cross a sector starts the next one; the zero length byte left behind
    // tells readers to skip there (fs/isofs/dir.c do_isofs_readdir).
    if ((offset % ISO_SECTOR_BYTES) + record.length > ISO_SECTOR_BYTES) offset = Math.ceil(offset / ISO_SECTOR_BYTES) * ISO_SECTOR_BYTES
    record.copy(ctx.image, start + offset)
    offset += record.length
  }
}

/** ECMA-119 9.4: one path table record per directory: 8 bytes + identifier, padded to even. */
function pathTableBytes (dirs: readonly LaidDirectory[]): number {
  return dirs.reduce((sum, dir) => sum + 8 + dir.identifier.length + (dir.identifier.length % 2), 0)
}

function writePathTables (image: Buffer, dirs: readonly LaidDirectory[], lLba: number, mLba: number): void {
  let l = lLba * ISO_SECTOR_BYTES
  let m = mLba * ISO_SECTOR_BYTES
  for (const dir of dirs) {
    for (const [offset, bigEndian] of [[l, false], [m, true]] as const) {
      image[offset] = dir.identifier.length // 9.4.1: length of directory identifier
      image[offset + 1] = 0 // 9.4.2: extended attribute record length
      if (bigEndian) {
        image.writeUInt32BE(dir.lba, offset + 2) // 9.4.3: location of extent
        image.writeUInt16BE(dir.parentIndex + 1, offset + 6) // 9.4.4: parent directory number
      } else {
        image.writeUInt32LE(dir.lba, offset + 2)
        image.writeUInt16LE(dir.parentIndex + 1, offset + 6)
      }
      dir.identifier.copy(image, offset + 8)
    }
    const length = 8 + dir.identifier.length + (dir.identifier.length % 2)
    l += length
    m += length
  }
}

interface DescriptorFields {
  joliet: boolean
  volumeId: string
  totalSectors: number
  pathTableBytes: number
  lPathLba: number
  mPathLba: number
  root: LaidDirectory | undefined
  timestamp: Date
}

/** ECMA-119 8.4 (primary) and 8.5 (supplementary, Joliet) volume descriptors. */
function writeVolumeDescriptor (image: Buffer, lba: number, fields: DescriptorFields): void {
  const d = image.subarray(lba * ISO_SECTOR_BYTES, (lba + 1) * ISO_SECTOR_BYTES)
  const text = (offset: number, length: number, value: string): void => {
    if (fields.joliet) {
      // Joliet: UCS-2BE, padded with U+0020.
      for (let i = 0; i < length / 2; i++) d.writeUInt16BE(i < value.length ? value.charCodeAt(i) : 0x20, offset + i * 2)
    } else {
      d.write(value.padEnd(length, ' ').slice(0, length), offset, 'latin1')
    }
  }
  d[0] = fields.joliet ? 2 : 1 // 8.4.1: volume descriptor type, 1 primary, 2 supplementary
  d.write('CD001', 1, 'latin1') // 8.4.2: standard identifier
  d[6] = 1 // 8.4.3: volume descriptor version
  text(8, 32, 'LINUX') // 8.4.5: system identifier
  text(40, 32, fields.volumeId) // 8.4.6: volume identifier (blkid LABEL)
  writeBoth32(d, 80, fields.totalSectors) // 8.4.8: volume space size
  if (fields.joliet) d.write('%/E', 88, 'latin1') // Joliet escape sequence: UCS-2 level 3
  writeBoth16(d, 120, 1) // 8.4.10: volume set size
  writeBoth16(d, 124, 1) // 8.4.11: volume sequence number
  writeBoth16(d, 128, ISO_SECTOR_BYTES) // 8.4.12: logical block size
  writeBoth32(d, 132, fields.pathTableBytes) // 8.4.13: path table size
  d.writeUInt32LE(fields.lPathLba, 140) // 8.4.14: type L path table
  d.writeUInt32BE(fields.mPathLba, 148) // 8.4.16: type M path table
  const root = fields.root
  if (root !== undefined) {
    directoryRecord({
      lba: root.lba,
      sizeBytes: root.sizeBytes,
      date: fields.timestamp,
      directory: true,
      identifier: Buffer.from([0]),
      systemUse: Buffer.alloc(0),
    }).copy(d, 156) // 8.4.18: root directory record (34 bytes)
  }
  text(190, 128, '') // 8.4.19: volume set identifier
  text(318, 128, '') // 8.4.20: publisher identifier
  text(446, 128, '') // 8.4.21: data preparer identifier
  text(574, 128, 'BYOI-AGENT CONFIGDRIVE') // 8.4.22: application identifier
  text(702, 37, '') // 8.4.23: copyright file identifier
  text(739, 37, '') // 8.4.24: abstract file identifier
  text(776, 37, '') // 8.4.25: bibliographic file identifier
  if (fields.joliet) {
    // The three 37-byte fields are an odd length: their last byte stays a space, as genisoimage does.
    for (const offset of [702, 739, 776]) d[offset + 36] = 0x20
  }
  date17(fields.timestamp).copy(d, 813) // 8.4.26: volume creation date
  date17(fields.timestamp).copy(d, 830) // 8.4.27: volume modification date (blkid UUID)
  date17(undefined).copy(d, 847) // 8.4.28: volume expiration date: unset
  date17(fields.timestamp).copy(d, 864) // 8.4.29: volume effective date
  d[881] = 1 // 8.4.31: file structure version
}
