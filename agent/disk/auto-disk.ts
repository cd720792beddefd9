/**
 * `--disk auto`: the disk an operator would pick. The first whole disk, in natural name order,
 * that is not removable, not virtual and not empty. Never a loop, RAM, zram, optical, floppy,
 * device-mapper, md RAID or network block device, nor a partition or a read-only disk.
 *
 * `pickAutoDisk` is a pure function over a listing of /sys/block; `readBlockDevices` makes that
 * listing from the real sysfs (or a folder laid out like it, in the tests).
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
                : undefined
    if (reason === undefined) candidates.push(device)
    else skipped.push({ name: device.name, reason })
  }
  const first = candidates[0]
  if (first === undefined) return { disk: undefined, skipped }
  for (const other of candidates.slice(1)) skipped.push({ name: other.name, reason: `not the first disk (${first.name} is)` })
  return { disk: { name: first.name, path: devicePath(first.name), sizeBytes: first.size512 * 512, model: first.model }, skipped }
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

/** The listing of a /sys/block-like folder; unreadable attributes count as absent. */
export async function readBlockDevices (sysBlockDir = '/sys/block'): Promise<BlockDeviceInfo[]> {
  const names = await readdir(sysBlockDir)
  return Promise.all(names.map(async (name) => {
    const dir = join(sysBlockDir, name)
    const resolved = await realpath(dir).catch(() => dir)
    return {
      name,
      removable: (await readAttribute(dir, 'removable')) === '1',
      size512: Number(await readAttribute(dir, 'size') ?? '0') || 0,
      virtual: resolved.includes('/devices/virtual/'),
      partition: await stat(join(dir, 'partition')).then(() => true, () => false),
      readOnly: (await readAttribute(dir, 'ro')) === '1',
      model: (await readAttribute(dir, join('device', 'model'))) || null,
    }
  }))
}

/** `--disk auto` on this machine. */
export async function findAutoDisk (sysBlockDir = '/sys/block'): Promise<AutoDiskChoice> {
  return pickAutoDisk(await readBlockDevices(sysBlockDir))
}

async function readAttribute (dir: string, name: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dir, name), 'utf8')).trim()
  } catch {
    return undefined
  }
}
