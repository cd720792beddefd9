import type { ConfigDriveFile } from './config-drive-files.js'

/**
 * A reader of the ISO 9660 (ECMA-119) ConfigDrives that others build: OpenStack's conductor
 * (`genisoimage -R -J -V config-2`, or mkisofs, xorrisofs, pycdlib), to check one, to rebuild it as
 * FAT for a disk whose sectors Linux can not mount ISO 9660 from, and to read back what was written.
 *
 * Names are the ones cloud-init sees once Linux has mounted the image with default options
 * (fs/isofs: `rock`, `joliet`, `map=normal`):
 * - Rock Ridge when the root "." carries an ER entry (`s_rock = 1`): the NM names of the primary tree;
 * - else Joliet when a supplementary descriptor has a Joliet escape sequence (%/@, %/C, %/E): its own
 *   tree, UCS-2 big-endian names, a trailing `;1` and trailing dots dropped (get_joliet_filename);
 * - else the primary tree: an NM name where a record has one (Linux still parses SUSP then),
 *   otherwise the identifier lower-cased, `;1` or `.;1` dropped, `;` made `.` (isofs_name_translate).
 *
 * Only regular files are returned; directories are walked, associated files skipped (as Linux hides
 * them), Rock Ridge symbolic links, devices and relocated-directory markers (RE) skipped.
 *
 * The image is untrusted: every offset and length is checked against the buffer, a directory extent
 * is walked once (a second visit is a loop), depth, entry count and file bytes are bounded, and
 * whatever can not be read the way Linux would show it (interleaved files, zisofs, relocated
 * directories, records across a sector) is refused. Every failure is an Iso9660FormatError naming
 * the byte offset; nothing else is thrown for any input.
 */

/** The image is not ISO 9660, is damaged, or holds something this reader refuses. */
export class Iso9660FormatError extends Error {
  readonly code = 'ISO9660_FORMAT'

  constructor (message: string) {
    super(message)
    this.name = 'Iso9660FormatError'
  }
}

export interface ReadIso9660Limits {
  /** Bytes of file data returned, all files together; 64 MiB by default (Ironic's largest drive). */
  maxFileBytes?: number
  /** Directory records walked (files and directories, not `.` and `..`); 10,000 by default. */
  maxEntries?: number
  /** Directory nesting below the root; 8 by default (openstack/latest/meta_data.json is 3). */
  maxDepth?: number
}

export type Iso9660Names = 'rock-ridge' | 'joliet' | 'iso9660'

export interface Iso9660Contents {
  /** The label blkid reports: the Joliet volume identifier when there is one, else the primary's. */
  volumeId: string
  /** Which names were read (see the module comment). */
  names: Iso9660Names
  /** Regular files in directory-record order, `/`-separated paths without a leading `/`. */
  files: ConfigDriveFile[]
}

const SECTOR_BYTES = 2048 // ECMA-119 6.1.2: the logical block size every tool writes
const FIRST_DESCRIPTOR_LBA = 16 // ECMA-119 6.2.1: after the 16-sector system area
const MAX_DESCRIPTORS = 84 // fs/isofs/inode.c scans LBA 16 to 99 for descriptors
const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024 // 64 MiB: Ironic's MAX_CONFIG_DRIVE_SIZE_MB
const DEFAULT_MAX_ENTRIES = 10_000
const DEFAULT_MAX_DEPTH = 8
const MAX_CONTINUATIONS = 32 // fs/isofs/rock.c RR_MAX_CE_ENTRIES
const MIN_RECORD_BYTES = 34 // ECMA-119 9.1: 33 fixed bytes and at least one identifier byte

const FLAG_DIRECTORY = 0x02 // ECMA-119 9.1.6 bit 1
const FLAG_ASSOCIATED = 0x04 // bit 2
const FLAG_MULTI_EXTENT = 0x80 // bit 7: not the final record of the file

const S_IFMT = 0o170000 // POSIX file type bits (RRIP PX)
const S_IFREG = 0o100000

const NM_CONTINUE = 0x01 // RRIP 4.1.4: the name goes on in the next NM entry
const NM_CURRENT = 0x02
const NM_PARENT = 0x04
const RR_FLAG_NM = 0x08 // RRIP 1.09 RR entry: NM entries are present

interface Limits {
  maxFileBytes: number
  maxEntries: number
  maxDepth: number
}

interface Record {
  /** Byte offset of the record in the image. */
  at: number
  flags: number
  /** First byte of the data (the extent plus its extended attribute record). */
  dataAt: number
  sizeBytes: number
  identifier: Buffer
  /** The System Use area, and its byte offset in the image. */
  systemUse: Buffer
  systemUseAt: number
}

/** What the SUSP entries of one record say. */
interface SystemUse {
  /** The NM name; undefined when there is none, or an RR entry says NM is not used. */
  name: string | undefined
  /** PX mode; undefined when there is no PX. */
  mode: number | undefined
  relocated: boolean
  childLink: boolean
  zisofs: boolean
  /** SUSP SP: bytes to skip at the start of every other System Use area. */
  skipBytes: number | undefined
  extensions: boolean
}

function checkLimit (name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`readIso9660Files ${name} must be a non-negative integer, got ${value}`)
  return value
}

/** The bytes at [offset, offset + length), or an Iso9660FormatError naming what lies past the end. */
function slice (image: Buffer, offset: number, length: number, what: string): Buffer {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > image.length) {
    throw new Iso9660FormatError(`${what} at byte ${offset} (${length} bytes) lies past the end of the ${image.length}-byte image`)
  }
  return image.subarray(offset, offset + length)
}

/** ECMA-119 7.3.3: both-byte-order 32-bit; Linux (isonum_733) reads the little-endian half. */
function both32 (b: Buffer, offset: number): number {
  return b.readUInt32LE(offset)
}

/** ECMA-119 9.1: one directory record at `at`, its length already checked to fit. */
function parseRecord (image: Buffer, at: number, length: number): Record {
  const r = image.subarray(at, at + length)
  const idLength = r[32] ?? 0 // 9.1.10: length of file identifier
  if (33 + idLength > length) throw new Iso9660FormatError(`directory record at byte ${at}: its ${idLength}-byte identifier overruns its ${length}-byte record`)
  const extent = both32(r, 2) // 9.1.3: location of extent
  const extAttrBlocks = r[1] ?? 0 // 9.1.2: extended attribute record length (blocks before the data)
  const unitSize = r[26] ?? 0 // 9.1.7: file unit size
  const gap = r[27] ?? 0 // 9.1.8: interleave gap size
  if (unitSize !== 0 || gap !== 0) {
    throw new Iso9660FormatError(`directory record at byte ${at}: an interleaved file (unit ${unitSize}, gap ${gap}), which Linux shows empty: refused`)
  }
  // fs/isofs/rock.c setup_rock_ridge: the System Use area starts after the identifier, padded to even.
  const suStart = 33 + idLength + ((33 + idLength) % 2)
  return {
    at,
    flags: r[25] ?? 0, // 9.1.6: file flags
    dataAt: (extent + extAttrBlocks) * SECTOR_BYTES,
    sizeBytes: both32(r, 10), // 9.1.4: data length
    identifier: r.subarray(33, 33 + idLength),
    systemUse: suStart < length ? r.subarray(suStart) : Buffer.alloc(0),
    systemUseAt: at + suStart,
  }
}

/** The records of one directory extent, `.` and `..` included, in order. */
function readDirectoryRecords (image: Buffer, at: number, sizeBytes: number, what: string): Record[] {
  const data = slice(image, at, sizeBytes, what)
  const records: Record[] = []
  let pos = 0
  while (pos < data.length) {
    const length = data[pos] ?? 0 // 9.1.1: length of directory record
    if (length === 0) {
      // 6.8.1.1: records never cross a sector; a zero length byte pads to the next one.
      pos = (Math.floor(pos / SECTOR_BYTES) + 1) * SECTOR_BYTES
      continue
    }
    const recordAt = at + pos
    if (length < MIN_RECORD_BYTES) throw new Iso9660FormatError(`directory record at byte ${recordAt}: length ${length}, less than ${MIN_RECORD_BYTES}`)
    if (pos + length > data.length) {
      throw new Iso9660FormatError(`directory record at byte ${recordAt}: its ${length} bytes overrun the ${sizeBytes}-byte directory at byte ${at}`)
    }
    if ((pos % SECTOR_BYTES) + length > SECTOR_BYTES) {
      throw new Iso9660FormatError(`directory record at byte ${recordAt}: its ${length} bytes cross a sector boundary (ECMA-119 6.8.1.1)`)
    }
    records.push(parseRecord(image, recordAt, length))
    pos += length
  }
  return records
}

function isDot (record: Record): boolean {
  return record.identifier.length === 1 && (record.identifier[0] === 0 || record.identifier[0] === 1)
}

/**
 * The SUSP entries of a System Use area and its continuations (SUSP 1.12 §4, §5.1 CE), as
 * fs/isofs/rock.c reads them: an entry shorter than 4 bytes or overrunning its area ends the
 * parse (Linux ignores such Rock Ridge data rather than hide the file); a continuation area
 * outside the image, or more than 32 of them, is refused.
 */
function parseSystemUse (image: Buffer, area: Buffer, areaAt: number): SystemUse {
  const out: SystemUse = { name: undefined, mode: undefined, relocated: false, childLink: false, zisofs: false, skipBytes: undefined, extensions: false }
  let nameParts: string | undefined
  let nameUsed = true
  let nameClosed = false
  let current = area
  let currentAt = areaAt
  for (let hops = 0; ; hops++) {
    let next: { at: number; length: number; entryAt: number } | undefined
    let pos = 0
    while (pos + 4 <= current.length) {
      const signature = current.toString('latin1', pos, pos + 2)
      const length = current[pos + 2] ?? 0
      if (length < 4 || pos + length > current.length) break
      const entry = current.subarray(pos, pos + length)
      const entryAt = currentAt + pos
      pos += length
      if (signature === 'ST') break // SUSP 5.4: terminator
      switch (signature) {
        case 'SP': // SUSP 5.3: check bytes 0xBE 0xEF, then LEN_SKP
          if (length >= 7 && entry[4] === 0xbe && entry[5] === 0xef) out.skipBytes = entry[6] ?? 0
          break
        case 'CE': // SUSP 5.1: block, offset, length of the continuation area
          if (length >= 28) next = { at: both32(entry, 4) * SECTOR_BYTES + both32(entry, 12), length: both32(entry, 20), entryAt }
          break
        case 'ER': // SUSP 5.5: an extension is in use (Linux: s_rock = 1, whatever its id)
          if (length >= 8 && 8 + (entry[4] ?? 0) <= length) out.extensions = true
          break
        case 'RR': // RRIP 1.09: the flags say which entries are recorded; no NM flag, no name
          if (length >= 5 && ((entry[4] ?? 0) & RR_FLAG_NM) === 0) nameUsed = false
          break
        case 'PX': // RRIP 4.1.1: POSIX file mode first
          if (length >= 12) out.mode = both32(entry, 4)
          break
        case 'NM': { // RRIP 4.1.4
          if (length < 5 || nameClosed) break
          const flags = entry[4] ?? 0
          if ((flags & (NM_CURRENT | NM_PARENT)) !== 0 || (flags & ~NM_CONTINUE) !== 0) break // Linux ignores these
          let bytes = entry.subarray(5)
          const nul = bytes.indexOf(0)
          if (nul >= 0) bytes = bytes.subarray(0, nul)
          nameParts = (nameParts ?? '') + bytes.toString('utf8')
          if ((flags & NM_CONTINUE) === 0) nameClosed = true
          break
        }
        case 'RE': // RRIP 4.1.5.3: a relocated directory, shown where its CL entry is
          out.relocated = true
          break
        case 'CL': // RRIP 4.1.5.1: placeholder for a relocated directory
          out.childLink = true
          break
        case 'ZF': // zisofs: compressed data
          out.zisofs = true
          break
        default:
          break
      }
    }
    if (next === undefined) break
    if (hops + 1 > MAX_CONTINUATIONS) throw new Iso9660FormatError(`System Use area at byte ${areaAt}: more than ${MAX_CONTINUATIONS} continuation areas`)
    if (next.length > SECTOR_BYTES || (next.at % SECTOR_BYTES) + next.length > SECTOR_BYTES) {
      throw new Iso9660FormatError(`SUSP CE entry at byte ${next.entryAt}: a ${next.length}-byte continuation area at byte ${next.at} crosses a sector`)
    }
    current = slice(image, next.at, next.length, `SUSP continuation area (CE entry at byte ${next.entryAt})`)
    currentAt = next.at
  }
  if (nameUsed && nameParts !== undefined) out.name = nameParts
  return out
}

/** fs/isofs/dir.c isofs_name_translate: lower case, `.;1` or `;1` dropped, other `;` become `.`. */
function translateName (identifier: Buffer): string {
  let out = ''
  const len = identifier.length
  for (let i = 0; i < len; i++) {
    let c = identifier[i] ?? 0
    if (c === 0) break
    if (c >= 0x41 && c <= 0x5a) c |= 0x20
    if (c === 0x2e && i === len - 3 && identifier[i + 1] === 0x3b && identifier[i + 2] === 0x31) break
    if (c === 0x3b && i === len - 2 && identifier[i + 1] === 0x31) break
    if (c === 0x3b || c === 0x2f) c = 0x2e
    out += String.fromCharCode(c)
  }
  return out
}

/** UCS-2 (UTF-16) big-endian text; an odd last byte is dropped, as Linux does (name_len >> 1). */
function ucs2be (bytes: Buffer): string {
  const units = Math.floor(bytes.length / 2)
  const swapped = Buffer.alloc(units * 2)
  for (let i = 0; i < units; i++) swapped.writeUInt16LE(bytes.readUInt16BE(i * 2), i * 2)
  return swapped.toString('utf16le')
}

/** fs/isofs/joliet.c get_joliet_filename: UCS-2 big-endian, `;1` dropped, then trailing dots. */
function jolietName (identifier: Buffer): string {
  let name = ucs2be(identifier)
  if (name.length > 2 && name.endsWith(';1')) name = name.slice(0, -2)
  while (name.length >= 2 && name.endsWith('.')) name = name.slice(0, -1)
  return name
}

interface VolumeDescriptors {
  primary: Buffer
  primaryAt: number
  joliet: Buffer | undefined
  jolietAt: number
}

/** ECMA-119 8: the descriptors from LBA 16 up to the terminator (Linux scans up to LBA 99). */
function readDescriptors (image: Buffer): VolumeDescriptors {
  let primary: { d: Buffer; at: number } | undefined
  let joliet: { d: Buffer; at: number } | undefined
  for (let i = 0; i < MAX_DESCRIPTORS; i++) {
    const at = (FIRST_DESCRIPTOR_LBA + i) * SECTOR_BYTES
    if (at + SECTOR_BYTES > image.length) {
      if (primary === undefined) {
        const from = FIRST_DESCRIPTOR_LBA * SECTOR_BYTES
      throw new Iso9660FormatError(`no primary volume descriptor before the end of the ${image.length}-byte image (looked from byte ${from})`)
      }
      break
    }
    const d = image.subarray(at, at + SECTOR_BYTES)
    if (d.toString('latin1', 1, 6) !== 'CD001') { // 8.1.2: standard identifier
      if (i === 0) throw new Iso9660FormatError(`not ISO 9660: no "CD001" at byte ${at + 1}`)
      continue // Linux skips descriptors it does not know
    }
    const type = d[0] // 8.1.1: 1 primary, 2 supplementary, 255 terminator
    if (type === 255) break
    if (type === 1) primary ??= { d, at }
    // Joliet: escape sequence %/@, %/C or %/E (UCS-2 levels 1-3) in the SVD's escape field (8.5.6, offset 88).
    if (type === 2 && d[88] === 0x25 && d[89] === 0x2f && (d[90] === 0x40 || d[90] === 0x43 || d[90] === 0x45)) joliet ??= { d, at }
  }
  if (primary === undefined) throw new Iso9660FormatError('no primary volume descriptor before the descriptor set terminator')
  return { primary: primary.d, primaryAt: primary.at, joliet: joliet?.d, jolietAt: joliet?.at ?? 0 }
}

/** The descriptor's checks, then its root directory record (8.4.18, at offset 156). */
function rootRecord (image: Buffer, d: Buffer, at: number, what: string): Record {
  const blockBytes = d.readUInt16LE(128) // 8.4.12: logical block size
  if (blockBytes !== SECTOR_BYTES) throw new Iso9660FormatError(`${what} at byte ${at}: logical block size ${blockBytes} (only ${SECTOR_BYTES} is read)`)
  const length = d[156] ?? 0
  if (length < MIN_RECORD_BYTES) throw new Iso9660FormatError(`${what} at byte ${at}: root directory record length ${length}`)
  const root = parseRecord(image, at + 156, Math.min(length, 34))
  if ((root.flags & FLAG_DIRECTORY) === 0) throw new Iso9660FormatError(`${what} at byte ${at}: the root directory record is not a directory`)
  return root
}

class Walk {
  private readonly files: ConfigDriveFile[] = []
  private readonly visited = new Set<number>()
  private entries = 0
  private fileBytes = 0

  constructor (
    private readonly image: Buffer,
    private readonly limits: Limits,
    private readonly names: Iso9660Names,
    /** SUSP SP's LEN_SKP, from the root "." (primary tree only). */
    private readonly skipBytes: number,
  ) {}

  run (root: Record): ConfigDriveFile[] {
    this.directory(root, [], 0)
    return this.files
  }

  private directory (dir: Record, path: readonly string[], depth: number): void {
    const where = path.length === 0 ? 'the root directory' : `directory /${path.join('/')}`
    if (this.visited.has(dir.dataAt)) {
      throw new Iso9660FormatError(`directory record at byte ${dir.at}: ${where} points at byte ${dir.dataAt}, a directory already read (a loop)`)
    }
    this.visited.add(dir.dataAt)
    if (dir.sizeBytes === 0) throw new Iso9660FormatError(`directory record at byte ${dir.at}: ${where} has size 0`)
    const records = readDirectoryRecords(this.image, dir.dataAt, dir.sizeBytes, `${where} (record at byte ${dir.at})`)
    const seen = new Set<string>()
    let pending: Record[] = []
    for (const record of records) {
      if (isDot(record)) continue
      this.entries++
      if (this.entries > this.limits.maxEntries) {
        throw new Iso9660FormatError(`directory record at byte ${record.at}: more than ${this.limits.maxEntries} entries`)
      }
      if ((record.flags & FLAG_MULTI_EXTENT) !== 0) {
        // ECMA-119 6.5.1: a file in several extents has one record per extent, all but the last flagged.
        if ((record.flags & FLAG_DIRECTORY) !== 0) throw new Iso9660FormatError(`directory record at byte ${record.at}: a directory in several extents`)
        const first = pending[0]
        if (first !== undefined && !first.identifier.equals(record.identifier)) {
          throw new Iso9660FormatError(`directory record at byte ${record.at}: a part of the multi-extent file at byte ${first.at} under another name`)
        }
        pending.push(record)
        continue
      }
      const parts = [...pending, record]
      const first = pending[0]
      pending = []
      if (first !== undefined && !first.identifier.equals(record.identifier)) {
        throw new Iso9660FormatError(`directory record at byte ${record.at}: the multi-extent file at byte ${first.at} ends under another name`)
      }
      if ((record.flags & FLAG_ASSOCIATED) !== 0) continue // Linux hides associated files (no showassoc)
      const entry = this.nameOf(parts[0] ?? record)
      if (entry === undefined) continue
      if (seen.has(entry.name)) throw new Iso9660FormatError(`directory record at byte ${record.at}: ${JSON.stringify(entry.name)} appears twice in ${where}`)
      seen.add(entry.name)
      const childPath = [...path, entry.name]
      if ((record.flags & FLAG_DIRECTORY) !== 0) {
        if (parts.length > 1) throw new Iso9660FormatError(`directory record at byte ${record.at}: a directory in several extents`)
        if (depth + 1 > this.limits.maxDepth) {
          throw new Iso9660FormatError(`directory record at byte ${record.at}: /${childPath.join('/')} is nested deeper than ${this.limits.maxDepth}`)
        }
        this.directory(record, childPath, depth + 1)
        continue
      }
      if (entry.mode !== undefined && (entry.mode & S_IFMT) !== S_IFREG) continue // a symbolic link, device, FIFO or socket
      this.file(parts, childPath)
    }
    const dangling = pending[0]
    if (dangling !== undefined) throw new Iso9660FormatError(`directory record at byte ${dangling.at}: a multi-extent file without its final record`)
  }

  /** The name Linux shows for a record, or undefined for one it hides. */
  private nameOf (record: Record): { name: string; mode: number | undefined } | undefined {
    let name: string
    let mode: number | undefined
    if (this.names === 'joliet') {
      name = jolietName(record.identifier)
    } else {
      const skip = Math.min(this.skipBytes, record.systemUse.length)
      const su = parseSystemUse(this.image, record.systemUse.subarray(skip), record.systemUseAt + skip)
      if (su.relocated) return undefined // RRIP RE: Linux hides it (it is shown where its CL points)
      if (su.childLink) throw new Iso9660FormatError(`directory record at byte ${record.at}: a relocated directory (Rock Ridge CL), not read`)
      if (su.zisofs) throw new Iso9660FormatError(`directory record at byte ${record.at}: a zisofs-compressed file (Rock Ridge ZF), not read`)
      name = su.name ?? translateName(record.identifier)
      mode = su.mode
    }
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new Iso9660FormatError(`directory record at byte ${record.at}: the name ${JSON.stringify(name)} can not be a path component`)
    }
    return { name, mode }
  }

  private file (parts: readonly Record[], path: readonly string[]): void {
    const data: Buffer[] = []
    for (const part of parts) {
      this.fileBytes += part.sizeBytes
      if (this.fileBytes > this.limits.maxFileBytes) {
        throw new Iso9660FormatError(`directory record at byte ${part.at}: ` +
          `/${path.join('/')} (${part.sizeBytes} bytes) takes the files past ${this.limits.maxFileBytes} bytes`)
      }
      data.push(slice(this.image, part.dataAt, part.sizeBytes, `the data of /${path.join('/')} (record at byte ${part.at})`))
    }
    this.files.push({ path: path.join('/'), data: Buffer.concat(data) })
  }
}

/**
 * The volume label and the regular files of an ISO 9660 image held in memory, named as Linux shows
 * them (see the module comment). Throws Iso9660FormatError for an image that is not ISO 9660,
 * is damaged, or goes past `limits`; RangeError only for malformed limits.
 */
export function readIso9660Files (image: Buffer, limits: ReadIso9660Limits = {}): Iso9660Contents {
  const checked: Limits = {
    maxFileBytes: checkLimit('maxFileBytes', limits.maxFileBytes, DEFAULT_MAX_FILE_BYTES),
    maxEntries: checkLimit('maxEntries', limits.maxEntries, DEFAULT_MAX_ENTRIES),
    maxDepth: checkLimit('maxDepth', limits.maxDepth, DEFAULT_MAX_DEPTH),
  }
  const descriptors = readDescriptors(image)
  const { primary, primaryAt } = descriptors
  // 8.4.8: volume space size. A shorter buffer is a cut image: refused whole rather than read in part.
  const volumeBytes = both32(primary, 80) * SECTOR_BYTES
  if (volumeBytes > image.length) {
    throw new Iso9660FormatError(`primary volume descriptor at byte ${primaryAt}: ` +
      `the volume is ${volumeBytes} bytes (byte 80), the image only ${image.length} (cut short?)`)
  }
  const primaryRoot = rootRecord(image, primary, primaryAt, 'primary volume descriptor')

  // Rock Ridge is in use when the root "." carries SUSP SP (its skip applies to every other
  // record) and an ER entry (fs/isofs: s_rock = 1, which makes Rock Ridge win over Joliet).
  const rootRecords = readDirectoryRecords(image, primaryRoot.dataAt, primaryRoot.sizeBytes, `the root directory (record at byte ${primaryRoot.at})`)
  const dot = rootRecords[0]
  if (dot === undefined || !isDot(dot)) throw new Iso9660FormatError(`the root directory at byte ${primaryRoot.dataAt} does not start with its "." record`)
  const rootUse = parseSystemUse(image, dot.systemUse, dot.systemUseAt)
  const names: Iso9660Names = rootUse.extensions ? 'rock-ridge' : descriptors.joliet !== undefined ? 'joliet' : 'iso9660'

  let root = primaryRoot
  if (names === 'joliet' && descriptors.joliet !== undefined) {
    root = rootRecord(image, descriptors.joliet, descriptors.jolietAt, 'Joliet supplementary volume descriptor')
  }
  const files = new Walk(image, checked, names, rootUse.skipBytes ?? 0).run(root)

  // blkid (probe_iso9660) reports the Joliet label, UCS-2 and unabridged, when there is one.
  const primaryLabel = primary.toString('latin1', 40, 72).replace(/[ \0]+$/, '') // 8.4.6: volume identifier
  const jolietLabel = descriptors.joliet === undefined ? '' : ucs2be(descriptors.joliet.subarray(40, 72)).replace(/[ \0]+$/, '')
  return { volumeId: jolietLabel !== '' ? jolietLabel : primaryLabel, names, files }
}
