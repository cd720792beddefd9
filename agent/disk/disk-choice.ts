/**
 * The target disk chosen by what the customer tells: Ironic's root device hints, or OVH's disk
 * group (the reinstall payload's `storage[0].diskGroupId`). Pure functions over a listing of
 * /sys/block (disk/auto-disk readBlockDevices).
 *
 * Both choose among the disks `--disk auto` considers (never a loop, RAM, optical… device, a
 * partition, a virtual, removable, read-only or empty device), and never a disk in use (mounted,
 * swap, held by device-mapper or md), even one the customer named: writing over it would wreck
 * what runs.
 *
 * Disk groups, as OVH forms them for a server: the disks of one kind (NVMe, SSD: not rotational,
 * HDD: rotational) and one size (in bytes) make a group; the groups are numbered from 1 in the
 * natural order of their first disk (compareDiskNames: nvme0n1 before sda, sdz before sdaa). So
 * when no disk is in use, group 1's first disk is the disk `--disk auto` picks. A disk in use
 * still counts in its group (the numbering does not move with what is mounted); it is only never
 * chosen: the image goes to the group's first disk not in use.
 */
import { autoDiskOf, compareDiskNames, devicePath, whyInUse, whyNotADisk, type AutoDisk, type BlockDeviceInfo } from './auto-disk.js'
import { formatGiB, formatHints, mismatchOf, type HintTarget, type RootDeviceHint } from './root-device-hints.js'

/** A disk chosen, and one line saying why; or the refusal, saying why none could be. */
export type DiskChoice =
  | { disk: AutoDisk; why: string }
  | { disk: undefined; refusal: string }

/** The disk as root device hints see it. */
export function hintTargetOf (device: BlockDeviceInfo): HintTarget {
  return {
    name: devicePath(device.name),
    sizeBytes: device.size512 * 512,
    model: device.model,
    vendor: device.vendor,
    serial: device.serials,
    wwn: device.wwns,
    wwnWithExtension: device.wwnWithExtension,
    wwnVendorExtension: device.wwnVendorExtension,
    rotational: device.rotational,
    hctl: device.hctl,
    byPath: device.byPaths,
  }
}

/** `size 447.13 GiB, model X, serial Y`: what tells a disk apart, for messages. */
function describe (device: BlockDeviceInfo): string {
  return [
    `size ${formatGiB(device.size512 * 512)}`,
    ...(device.model === null ? [] : [`model ${device.model}`]),
    ...(device.serials[0] === undefined ? [] : [`serial ${device.serials[0]}`]),
  ].join(', ')
}

/** The devices in natural order, split into the disks that may be chosen (in use or not) and the others. */
function sortOut (devices: readonly BlockDeviceInfo[]): { disks: BlockDeviceInfo[]; others: Array<{ name: string; reason: string }> } {
  const disks: BlockDeviceInfo[] = []
  const others: Array<{ name: string; reason: string }> = []
  for (const device of [...devices].sort((a, b) => compareDiskNames(a.name, b.name))) {
    const reason = whyNotADisk(device)
    if (reason === undefined) disks.push(device)
    else others.push({ name: device.name, reason })
  }
  return { disks, others }
}

/** `not considered: loop0, loop1 (not a disk…); sdc (removable)`, the reasons grouped; '' when none. */
function notConsidered (others: ReadonlyArray<{ name: string; reason: string }>): string {
  const byReason = new Map<string, string[]>()
  for (const { name, reason } of others) byReason.set(reason, [...(byReason.get(reason) ?? []), name])
  if (byReason.size === 0) return ''
  return `; not considered: ${[...byReason].map(([reason, names]) => `${names.join(', ')} (${reason})`).join('; ')}`
}

/**
 * The one disk the hints match among the disks that may be chosen and are not in use. None, or
 * more than one, is a refusal that lists each disk and why it does not match (or that it does);
 * a disk in use that matches is said so, and never chosen.
 */
export function pickDiskByHints (devices: readonly BlockDeviceInfo[], hints: readonly RootDeviceHint[]): DiskChoice {
  const said = formatHints(hints)
  const { disks, others } = sortOut(devices)
  const free: BlockDeviceInfo[] = []
  const busy: Array<{ device: BlockDeviceInfo; use: string }> = []
  const mismatched: Array<{ device: BlockDeviceInfo; why: string }> = []
  for (const device of disks) {
    const why = mismatchOf(hintTargetOf(device), hints)
    const use = whyInUse(device)
    if (why !== undefined) mismatched.push({ device, why })
    else if (use !== undefined) busy.push({ device, use })
    else free.push(device)
  }
  const busyText = busy.map(({ device, use }) => `${device.name} matches but is ${use}`)
  const chosen = free[0]
  if (chosen !== undefined && free.length === 1) {
    const also = busyText.length === 0 ? '' : `; ${busyText.join('; ')} (never chosen)`
    return { disk: autoDiskOf(chosen), why: `${devicePath(chosen.name)} chosen by root device hints ${said} (${describe(chosen)})${also}` }
  }
  if (free.length > 1) {
    return {
      disk: undefined,
      refusal: `${free.length} disks match the root device hints ${said}: ` +
        `${free.map((d) => `${d.name} (${describe(d)})`).join('; ')}; add a hint that tells them apart (serial, wwn, by_path)`,
    }
  }
  const reasons = [...busyText, ...mismatched.map(({ device, why }) => `${device.name}: ${why}`)]
  const head = busy.length > 0
    ? `no disk that is free matches the root device hints ${said} (a disk in use is never chosen)`
    : `no disk matches the root device hints ${said}`
  return { disk: undefined, refusal: `${head}: ${reasons.length === 0 ? 'no disk at all' : reasons.join('; ')}${notConsidered(others)}` }
}

export type DiskKind = 'NVMe' | 'SSD' | 'HDD'

/** One disk group: its number (from 1), what its disks share, and its disks in natural order. */
export interface DiskGroup {
  id: number
  kind: DiskKind
  sizeBytes: number
  disks: BlockDeviceInfo[]
}

/** NVMe by its kernel name; otherwise SSD when sysfs says not rotational, HDD when it says rotational or nothing. */
export function diskKindOf (device: BlockDeviceInfo): DiskKind {
  if (device.name.startsWith('nvme')) return 'NVMe'
  return device.rotational === false ? 'SSD' : 'HDD'
}

/** The server's disk groups (see the module's comment), numbered from 1 in the natural order of their first disk. */
export function formDiskGroups (devices: readonly BlockDeviceInfo[]): DiskGroup[] {
  const groups: DiskGroup[] = []
  for (const device of sortOut(devices).disks) {
    const kind = diskKindOf(device)
    const sizeBytes = device.size512 * 512
    const group = groups.find((g) => g.kind === kind && g.sizeBytes === sizeBytes)
    if (group === undefined) groups.push({ id: groups.length + 1, kind, sizeBytes, disks: [device] })
    else group.disks.push(device)
  }
  return groups
}

/** `group 2 (HDD, 3726.02 GiB: sda, sdb)`. */
export function describeGroup (group: DiskGroup): string {
  return `group ${group.id} (${group.kind}, ${formatGiB(group.sizeBytes)}: ${group.disks.map((d) => d.name).join(', ')})`
}

/** The first disk not in use of disk group `groupId`; refused when the group does not exist or has no free disk. */
export function pickDiskByGroup (devices: readonly BlockDeviceInfo[], groupId: number): DiskChoice {
  const groups = formDiskGroups(devices)
  const group = groups.find((g) => g.id === groupId)
  if (group === undefined) {
    const known = groups.length === 0 ? 'this server has no disk that can be chosen' : `this server has ${groups.map(describeGroup).join(', ')}`
    return { disk: undefined, refusal: `disk group ${groupId} does not exist: ${known}` }
  }
  const passed: string[] = []
  for (const device of group.disks) {
    const use = whyInUse(device)
    if (use === undefined) {
      const before = passed.length === 0 ? '' : `; ${passed.join('; ')}`
      return { disk: autoDiskOf(device), why: `${devicePath(device.name)} chosen as the first free disk of disk ${describeGroup(group)}${before}` }
    }
    passed.push(`${device.name} is ${use}`)
  }
  return { disk: undefined, refusal: `disk ${describeGroup(group)} has no disk that is not in use: ${passed.join('; ')}` }
}
