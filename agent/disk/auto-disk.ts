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
 * listing from the real sysfs and /proc (or files laid out like them, in the tests).
 */
import { readdir, readFile, realpath, stat } from 'node:fs/promises'
import { join } from 'node:path'

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
}

/** Where `readBlockDevices` looks; the defaults are the real ones. */
export interface BlockDeviceSources {
  /** Default /sys/block. */
  sysBlockDir?: string
  /** Default /proc/self/mountinfo. */
  mountInfoPath?: string
  /** Default /proc/swaps (absent on a kernel without swap: then none). */
  swapsPath?: string
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
    const reason = NEVER.test(device.name)
      ? 'not a disk (loop, RAM, optical, floppy, device-mapper, md or network device)'
      : device.partition ? 'a partition'
        : device.virtual ? 'a virtual device'
          : device.removable ? 'removable'
            : device.readOnly ? 'read-only'
              : device.size512 <= 0 ? 'empty (size 0)'
                : inUse(device)
    if (reason === undefined) candidates.push(device)
    else skipped.push({ name: device.name, reason })
  }
  const first = candidates[0]
  if (first === undefined) return { disk: undefined, skipped }
  for (const other of candidates.slice(1)) skipped.push({ name: other.name, reason: `not the first disk (${first.name} is)` })
  return { disk: { name: first.name, path: devicePath(first.name), sizeBytes: first.size512 * 512, model: first.model }, skipped }
}

/** Uses listed in a skip reason; more are counted. */
const MAX_USES_SAID = 3

/** `in use: partition sda1 mounted at /boot, swap on sda2`, or undefined when nothing uses the disk. */
function inUse (device: BlockDeviceInfo): string | undefined {
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
 * no swap.
 */
export async function readBlockDevices (sources: BlockDeviceSources = {}): Promise<BlockDeviceInfo[]> {
  const sysBlockDir = sources.sysBlockDir ?? '/sys/block'
  const mountInfoPath = sources.mountInfoPath ?? '/proc/self/mountinfo'
  const swapsPath = sources.swapsPath ?? '/proc/swaps'
  const [names, mountTable, swapTable] = await Promise.all([
    readdir(sysBlockDir),
    readFile(mountInfoPath, 'utf8').catch((err: unknown) => {
      throw new Error(`cannot read ${mountInfoPath} to tell which disks are mounted: ${(err as Error).message}`, { cause: err })
    }),
    readFile(swapsPath, 'utf8').catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ''
      throw new Error(`cannot read ${swapsPath} to tell which disks hold swap: ${(err as Error).message}`, { cause: err })
    }),
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
    }
  }))
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
