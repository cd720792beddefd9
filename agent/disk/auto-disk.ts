/**
 * `--disk auto`: the disk an operator would pick. The first whole disk, in natural name order,
 * that is not removable, not virtual, not empty and not in use. Never a loop, RAM, zram, optical,
 * floppy, device-mapper, md RAID or network block device, nor a partition or a read-only disk.
 *
 * In use: the disk or one of its partitions is mounted (/proc/self/mountinfo), used as swap
 * (/proc/swaps), or held by another block device (its `holders/` in sysfs: a device-mapper
 * target such as LVM or LUKS, an md RAID). Such a disk carries something live (the rescue
 * system's own files, a RAID member): writing an image over it would wreck what runs, so it is
 * never the automatic choice, whatever its place in the order.
 *
 * `pickAutoDisk` is a pure function over a listing of /sys/block; `readBlockDevices` makes that
 * listing from the real sysfs and /proc (or files laid out like them, in the tests), with what
 * root device hints and disk groups need (disk/disk-choice): vendor, serials, WWNs, rotational,
 * SCSI address, /dev/disk/by-path names.
 */
import { readdir, readFile, readlink, realpath, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'

/** One entry of /sys/block, as far as the choice needs it. */
export interface BlockDeviceInfo {
  name: string
  /** /sys/block/NAME/removable is 1 (USB sticks, card readers, optical drives). */
  removable: boolean
  /** /sys/block/NAME/size: always in 512-byte units, whatever the logical sector size. */
  size512: number
  /** The device's sysfs path lies under /devices/virtual/ (no hardware behind it). */
  virtual: boolean
  /** A partition (has a `partition` file): sysfs lists them under /sys/class/block. */
  partition: boolean
  /** /sys/block/NAME/ro is 1. */
  readOnly: boolean
  /** /sys/block/NAME/device/model, trimmed, if any. */
  model: string | null
  /** Mounts of the disk or of one of its partitions (`device` is the one mounted: sda or sda1). */
  mounts: Array<{ device: string; mountPoint: string }>
  /** The disk or those of its partitions that are swap. */
  swaps: string[]
  /** Block devices built on the disk or on one of its partitions (dm-0 on sda2, md0 on sda). */
  holders: Array<{ device: string; holder: string }>
  /** /sys/block/NAME/device/vendor, trimmed (SCSI and SATA: `ATA`, `SEAGATE`; virtio: its PCI vendor `0x1af4`), if any. */
  vendor: string | null
  /**
   * The serial numbers the disk answers to, each once: udev's (ID_SCSI_SERIAL, ID_SERIAL_SHORT or
   * ID_SERIAL, as lsblk and ironic-python-agent read them) when its database has the disk, and
   * sysfs's: device/serial (NVMe), serial (virtio-blk), device/vpd_pg80 (SCSI's unit serial number page).
   */
  serials: string[]
  /**
   * The disk's WWNs, each once: udev's ID_WWN_WITH_EXTENSION and ID_WWN, else from sysfs's wwid
   * as udev makes them: a SCSI `naa.` identifier as 0x and its first 16 hex digits, an NVMe
   * namespace's wwid as it is (`eui.…`, `nvme.…`).
   */
  wwns: string[]
  /** udev's ID_WWN_WITH_EXTENSION, else sysfs's `naa.` identifier whole, as 0x…; null without one. */
  wwnWithExtension: string | null
  /** udev's ID_WWN_VENDOR_EXTENSION, else the last 16 hex digits of a 32-digit `naa.` identifier, as 0x…; null without one. */
  wwnVendorExtension: string | null
  /** /sys/block/NAME/queue/rotational: true for a spinning disk; null when sysfs does not say. */
  rotational: boolean | null
  /** The SCSI address Host:Channel:Target:LUN (the name in device/scsi_device/); null for NVMe, virtio-blk… */
  hctl: string | null
  /** The /dev/disk/by-path/… names of the disk (udev's links, or the S: lines of its database), sorted. */
  byPaths: string[]
}

/** Where `readBlockDevices` looks; the defaults are the real ones. */
export interface BlockDeviceSources {
  /** Default /sys/block. */
  sysBlockDir?: string
  /** Default /proc/self/mountinfo. */
  mountInfoPath?: string
  /** Default /proc/swaps (absent on a kernel without swap: then none). */
  swapsPath?: string
  /** udev's database, one file per device (bMAJOR:MINOR); default /run/udev/data (absent in a rescue system without udev: then sysfs only). */
  udevDataDir?: string
  /** Default /dev/disk/by-path (absent without udev: then the database's links, or none). */
  byPathDir?: string
}

export interface AutoDisk {
  name: string
  path: string
  sizeBytes: number
  model: string | null
}

export interface AutoDiskChoice {
  disk: AutoDisk | undefined
  /** Every device passed over, with why (for the log, and the refusal when none is left). */
  skipped: Array<{ name: string; reason: string }>
}

/** Kernel name prefixes of devices that are never an install target. */
const NEVER = /^(loop|ram|zram|sr|fd|dm-|md|nbd)/

export function pickAutoDisk (devices: readonly BlockDeviceInfo[]): AutoDiskChoice {
  const skipped: AutoDiskChoice['skipped'] = []
  const candidates: BlockDeviceInfo[] = []
  for (const device of [...devices].sort((a, b) => compareDiskNames(a.name, b.name))) {
    const reason = whyNotADisk(device) ?? whyInUse(device)
    if (reason === undefined) candidates.push(device)
    else skipped.push({ name: device.name, reason })
  }
  const first = candidates[0]
  if (first === undefined) return { disk: undefined, skipped }
  for (const other of candidates.slice(1)) skipped.push({ name: other.name, reason: `not the first disk (${first.name} is)` })
  return { disk: autoDiskOf(first), skipped }
}

/** The disks that may be written now (a disk, not in use), in natural order: what erase_devices_metadata erases. */
export function freeDisks (devices: readonly BlockDeviceInfo[]): BlockDeviceInfo[] {
  return [...devices].sort((a, b) => compareDiskNames(a.name, b.name)).filter((device) => (whyNotADisk(device) ?? whyInUse(device)) === undefined)
}

/** The disk as a choice gives it. */
export function autoDiskOf (device: BlockDeviceInfo): AutoDisk {
  return { name: device.name, path: devicePath(device.name), sizeBytes: device.size512 * 512, model: device.model }
}

/**
 * Why a device is never an install target (a loop, RAM… device, a partition, virtual, removable,
 * read-only or empty), or undefined for a disk that may be one (when it is not in use).
 */
export function whyNotADisk (device: BlockDeviceInfo): string | undefined {
  return NEVER.test(device.name)
    ? 'not a disk (loop, RAM, optical, floppy, device-mapper, md or network device)'
    : device.partition ? 'a partition'
      : device.virtual ? 'a virtual device'
        : device.removable ? 'removable'
          : device.readOnly ? 'read-only'
            : device.size512 <= 0 ? 'empty (size 0)'
              : undefined
}

/** Uses listed in a skip reason; more are counted. */
const MAX_USES_SAID = 3

/** `in use: partition sda1 mounted at /boot, swap on sda2`, or undefined when nothing uses the disk. */
export function whyInUse (device: BlockDeviceInfo): string | undefined {
  const which = (name: string): string => name === device.name ? name : `partition ${name}`
  const uses = [...new Set([
    ...device.mounts.map((m) => `${which(m.device)} mounted at ${m.mountPoint}`),
    ...device.swaps.map((name) => `swap on ${name}`),
    ...device.holders.map((h) => h.device === device.name ? `held by ${h.holder}` : `${which(h.device)} held by ${h.holder}`),
  ])]
  if (uses.length === 0) return undefined
  const said = uses.slice(0, MAX_USES_SAID).join(', ')
  return `in use: ${said}${uses.length > MAX_USES_SAID ? ` and ${uses.length - MAX_USES_SAID} more` : ''}`
}

/** `/dev/NAME`; sysfs writes a `/` in a device name as `!` (e.g. `cciss!c0d0`). */
export function devicePath (name: string): string {
  return `/dev/${name.replaceAll('!', '/')}`
}

/**
 * Natural order of kernel disk names: digit runs compare as numbers (nvme2n1 < nvme10n1), and the
 * letter suffix of sd/vd/hd/xvd names as the kernel counts it (sdz < sdaa), so the order is the
 * order of the bus.
 */
export function compareDiskNames (a: string, b: string): number {
  const x = sortKey(a)
  const y = sortKey(b)
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i] as string | number
    const q = y[i] as string | number
    if (p === q) continue
    if (typeof p === 'number' && typeof q === 'number') return p - q
    if (typeof p === 'number') return -1 // digits before letters
    if (typeof q === 'number') return 1
    return p < q ? -1 : 1
  }
  return x.length - y.length
}

const LETTERED = /^(sd|vd|hd|xvd)([a-z]+)(\d*)$/

function sortKey (name: string): Array<string | number> {
  const lettered = LETTERED.exec(name)
  if (lettered !== null) {
    const [, prefix = '', letters = '', digits = ''] = lettered
    // sda = 1 … sdz = 26, sdaa = 27: bijective base 26.
    let index = 0
    for (const letter of letters) index = index * 26 + (letter.charCodeAt(0) - 96)
    return digits === '' ? [prefix, index] : [prefix, index, Number(digits)]
  }
  return (name.match(/\d+|\D+/g) ?? []).map((run) => /^\d/.test(run) ? Number(run) : run)
}

/** One mount of /proc/self/mountinfo (proc(5)): the device number and source of what is mounted where. */
export interface MountEntry {
  /** MAJOR:MINOR, field 3 (btrfs shows an anonymous 0:N here: the source tells its device). */
  dev: string
  mountPoint: string
  /** The source after the ` - ` separator and the type, e.g. /dev/sda1. */
  source: string
}

/** /proc/self/mountinfo's lines; a line it cannot read is skipped. */
export function parseMountInfo (text: string): MountEntry[] {
  const mounts: MountEntry[] = []
  for (const line of text.split('\n')) {
    const fields = line.split(' ')
    // ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPEROPTIONS
    const separator = fields.indexOf('-', 6)
    const dev = fields[2]
    const mountPoint = fields[4]
    if (separator < 0 || dev === undefined || mountPoint === undefined || !/^\d+:\d+$/.test(dev)) continue
    mounts.push({ dev, mountPoint: unescapeOctal(mountPoint), source: unescapeOctal(fields[separator + 2] ?? '') })
  }
  return mounts
}

/** The file names of /proc/swaps (a header line, then one line per swap area). */
export function parseSwaps (text: string): string[] {
  return text.split('\n').slice(1).map((line) => line.split(/[ \t]+/)[0] ?? '').filter((name) => name !== '').map(unescapeOctal)
}

/** The kernel writes a space, tab, line break or backslash in these files as \040, \011, \012, \134. */
function unescapeOctal (text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/**
 * The listing of a /sys/block-like folder, with what uses each disk: mounts and swaps are matched
 * to the disk and its partitions (the subfolders with a `partition` file) by device number
 * (`dev`, MAJOR:MINOR) or by /dev path. Unreadable attributes count as absent; an unreadable
 * mount table is an error (nothing could then be known to be free), a missing /proc/swaps means
 * no swap. udev's database and /dev/disk/by-path are read when present (a rescue system may run
 * without udev: the serials and WWNs then come from sysfs alone, and no by-path name is known).
 */
export async function readBlockDevices (sources: BlockDeviceSources = {}): Promise<BlockDeviceInfo[]> {
  const sysBlockDir = sources.sysBlockDir ?? '/sys/block'
  const mountInfoPath = sources.mountInfoPath ?? '/proc/self/mountinfo'
  const swapsPath = sources.swapsPath ?? '/proc/swaps'
  const udevDataDir = sources.udevDataDir ?? '/run/udev/data'
  const [names, mountTable, swapTable, byPathLinks] = await Promise.all([
    readdir(sysBlockDir),
    readFile(mountInfoPath, 'utf8').catch((err: unknown) => {
      throw new Error(`cannot read ${mountInfoPath} to tell which disks are mounted: ${(err as Error).message}`, { cause: err })
    }),
    readFile(swapsPath, 'utf8').catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ''
      throw new Error(`cannot read ${swapsPath} to tell which disks hold swap: ${(err as Error).message}`, { cause: err })
    }),
    readByPathLinks(sources.byPathDir ?? '/dev/disk/by-path'),
  ])
  const mounts = parseMountInfo(mountTable)
  const swaps = new Set(parseSwaps(swapTable))
  return Promise.all(names.map(async (name) => {
    const dir = join(sysBlockDir, name)
    const resolved = await realpath(dir).catch(() => dir)
    // The disk itself, then its partitions: each with its device number and holders.
    const parts = [{ name, dir }, ...(await partitionNames(dir)).map((part) => ({ name: part, dir: join(dir, part) }))]
    const nodes = await Promise.all(parts.map(async (part) => ({
      name: part.name,
      dev: (await readAttribute(part.dir, 'dev')) ?? null,
      holders: await readdir(join(part.dir, 'holders')).catch(() => []),
    })))
    const dev = nodes[0]?.dev ?? null
    const udev = dev === null ? undefined : await readUdevData(join(udevDataDir, `b${dev}`))
    const identity = await readIdentity(dir, name, udev)
    const rotational = await readAttribute(dir, join('queue', 'rotational'))
    return {
      name,
      removable: (await readAttribute(dir, 'removable')) === '1',
      size512: Number(await readAttribute(dir, 'size') ?? '0') || 0,
      virtual: resolved.includes('/devices/virtual/'),
      partition: await stat(join(dir, 'partition')).then(() => true, () => false),
      readOnly: (await readAttribute(dir, 'ro')) === '1',
      model: (await readAttribute(dir, join('device', 'model'))) || null,
      mounts: nodes.flatMap((node) => mounts
        .filter((m) => (node.dev !== null && m.dev === node.dev) || m.source === devicePath(node.name))
        .map((m) => ({ device: node.name, mountPoint: m.mountPoint }))),
      swaps: nodes.filter((node) => swaps.has(devicePath(node.name))).map((node) => node.name),
      holders: nodes.flatMap((node) => node.holders.sort(compareDiskNames).map((holder) => ({ device: node.name, holder }))),
      vendor: (await readAttribute(dir, join('device', 'vendor'))) || null,
      ...identity,
      rotational: rotational === '1' ? true : rotational === '0' ? false : null,
      hctl: (await readdir(join(dir, 'device', 'scsi_device')).catch(() => [])).sort()[0] ?? null,
      byPaths: [...new Set([
        ...(byPathLinks.get(devicePath(name)) ?? []),
        ...(udev?.links ?? []).filter((link) => link.startsWith('disk/by-path/')).map((link) => `/dev/${link}`),
      ])].sort(),
    }
  }))
}

/** One device's file of udev's database: its properties (E:KEY=VALUE lines) and links (S: lines, under /dev). */
export interface UdevData {
  properties: Map<string, string>
  links: string[]
}

/** udev's database file of a device, or undefined when there is none (no udev, or not this device). */
async function readUdevData (path: string): Promise<UdevData | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined)
  return text === undefined ? undefined : parseUdevData(text)
}

/** The lines of a /run/udev/data/bMAJOR:MINOR file: `E:ID_SERIAL_SHORT=…`, `S:disk/by-path/…`; others skipped. */
export function parseUdevData (text: string): UdevData {
  const properties = new Map<string, string>()
  const links: string[] = []
  for (const line of text.split('\n')) {
    if (line.startsWith('E:')) {
      const equals = line.indexOf('=')
      if (equals > 2) properties.set(line.slice(2, equals), line.slice(equals + 1))
    } else if (line.startsWith('S:') && line.length > 2) {
      links.push(line.slice(2))
    }
  }
  return { properties, links }
}

/** The identity fields: serials and WWNs from udev's database when it has them, and from sysfs. */
type Identity = Pick<BlockDeviceInfo, 'serials' | 'wwns' | 'wwnWithExtension' | 'wwnVendorExtension'>

async function readIdentity (dir: string, name: string, udev: UdevData | undefined): Promise<Identity> {
  const property = (key: string): string | undefined => {
    const value = udev?.properties.get(key)?.trim()
    return value === '' ? undefined : value
  }
  const [deviceSerial, blockSerial, vpdSerial, deviceWwid, blockWwid] = await Promise.all([
    readAttribute(dir, join('device', 'serial')),
    readAttribute(dir, 'serial'),
    readFile(join(dir, 'device', 'vpd_pg80')).then(unitSerialNumber, () => undefined),
    readAttribute(dir, join('device', 'wwid')),
    readAttribute(dir, 'wwid'),
  ])
  const serials = [
    // lsblk's SERIAL, then ironic-python-agent's udev serial.
    property('SCSI_IDENT_SERIAL') ?? property('ID_SCSI_SERIAL') ?? property('ID_SERIAL_SHORT') ?? property('ID_SERIAL'),
    property('ID_SERIAL_SHORT') ?? property('ID_SERIAL'),
    deviceSerial, blockSerial, vpdSerial,
  ]
  const fromSysfs = wwnsOfWwid(name, deviceWwid || blockWwid || undefined)
  const withExtension = property('ID_WWN_WITH_EXTENSION') ?? fromSysfs.withExtension
  // lsblk's WWN (with the extension when there is one) and ironic-python-agent's ID_WWN; sysfs's when udev has none.
  const udevWwns = [property('ID_WWN_WITH_EXTENSION'), property('ID_WWN')]
  const wwns = udevWwns.some((w) => w !== undefined) ? udevWwns : [fromSysfs.wwn, fromSysfs.withExtension]
  return {
    serials: unique(serials),
    wwns: unique(wwns),
    wwnWithExtension: withExtension ?? null,
    wwnVendorExtension: property('ID_WWN_VENDOR_EXTENSION') ?? fromSysfs.vendorExtension ?? null,
  }
}

/**
 * udev's WWN properties made from a sysfs wwid: a SCSI NAA identifier `naa.5000C500A1B2C3D4` is
 * ID_WWN 0x5000c500a1b2c3d4; a 32-digit one (NAA 6, IEEE Registered Extended) splits into the
 * WWN and its vendor extension; an NVMe namespace's wwid is its ID_WWN as it is. Other SCSI
 * designators (t10., eui.) give none.
 */
export function wwnsOfWwid (name: string, wwid: string | undefined): { wwn?: string; withExtension?: string; vendorExtension?: string } {
  if (wwid === undefined || wwid === '') return {}
  if (name.startsWith('nvme')) return { wwn: wwid }
  const naa = /^naa\.([0-9a-f]{16}|[0-9a-f]{32})$/i.exec(wwid)?.[1]?.toLowerCase()
  if (naa === undefined) return {}
  if (naa.length === 16) return { wwn: `0x${naa}`, withExtension: `0x${naa}` }
  return { wwn: `0x${naa.slice(0, 16)}`, withExtension: `0x${naa}`, vendorExtension: `0x${naa.slice(16)}` }
}

/** SCSI VPD page 0x80, Unit Serial Number (SPC-4 7.8.16): byte 1 the page code, bytes 2-3 the length, then ASCII. */
function unitSerialNumber (page: Buffer): string | undefined {
  if (page.length < 4 || page[1] !== 0x80) return undefined
  const length = page.readUInt16BE(2)
  const serial = page.subarray(4, 4 + length).toString('latin1').replace(/\0/g, '').trim()
  return serial === '' ? undefined : serial
}

function unique (values: ReadonlyArray<string | undefined>): string[] {
  return [...new Set(values.map((v) => v?.trim()).filter((v): v is string => v !== undefined && v !== ''))]
}

/** /dev/NAME → the by-path links to it (`../../sda` resolved from the folder); an absent folder: none. */
async function readByPathLinks (byPathDir: string): Promise<Map<string, string[]>> {
  const links = new Map<string, string[]>()
  const entries = await readdir(byPathDir).catch(() => [])
  await Promise.all(entries.map(async (entry) => {
    const path = join(byPathDir, entry)
    const target = await readlink(path).catch(() => undefined)
    if (target === undefined) return
    // The link as /dev/disk/by-path/ENTRY, whatever folder the tests lay it out in.
    const devPath = resolve('/dev/disk/by-path', target)
    links.set(devPath, [...(links.get(devPath) ?? []), `/dev/disk/by-path/${entry}`])
  }))
  return links
}

/** `--disk auto` on this machine (or over the given sources). */
export async function findAutoDisk (sources: BlockDeviceSources = {}): Promise<AutoDiskChoice> {
  return pickAutoDisk(await readBlockDevices(sources))
}

/** The subfolders of a disk's sysfs folder that are its partitions (they hold a `partition` file), in natural order. */
async function partitionNames (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  const names = await Promise.all(entries
    // Symbolic links (device, bdi, subsystem) lead elsewhere in sysfs: never followed.
    .filter((entry) => entry.isDirectory())
    .map(async (entry) => await stat(join(dir, entry.name, 'partition')).then(() => entry.name, () => undefined)))
  return names.filter((name): name is string => name !== undefined).sort(compareDiskNames)
}

async function readAttribute (dir: string, name: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dir, name), 'utf8')).trim()
  } catch {
    return undefined
  }
}
