/**
 * The disk an install goes to when the agent chooses it (`--disk auto`, `--disk hints:…`), over
 * the block devices as they are now (disk/auto-disk readBlockDevices) and disk/disk-choice's
 * rules. A disk that cannot be chosen is the install's DISK_NOT_CHOSEN, the listing's failure too.
 */
import { pickAutoDisk, readBlockDevices, type AutoDisk, type BlockDeviceSources } from '../disk/auto-disk.js'
import { pickDiskByGroup, pickDiskByHints, type DiskChoice } from '../disk/disk-choice.js'
import type { RootDeviceHint } from '../disk/root-device-hints.js'
import { errors } from '../errors/install-error.js'
import type { DiskView } from './job-status.js'

/** A disk chosen for an install, as the status shows it, and the one line that says why. */
export interface ChosenDisk {
  disk: DiskView
  why: string
}

/** What chooses: the payload's disk group, `--disk auto`'s first free disk, or root device hints. */
export type DiskRule = { groupId: number } | { auto: true } | { hints: readonly RootDeviceHint[] }

/** The disk `rule` chooses now; throws DISK_NOT_CHOSEN (an InstallError) saying why none can be. */
export async function chooseInstallDisk (rule: DiskRule, sources: BlockDeviceSources | undefined): Promise<ChosenDisk> {
  let devices
  try {
    devices = await readBlockDevices(sources)
  } catch (err) {
    throw errors.diskNotChosen(`the block devices cannot be listed (${(err as Error).message})`, err)
  }
  const choice = pickBy(rule, devices)
  if (choice.disk === undefined) throw errors.diskNotChosen(choice.refusal)
  return { disk: diskView(choice.disk, !('hints' in rule)), why: choice.why }
}

function pickBy (rule: DiskRule, devices: Awaited<ReturnType<typeof readBlockDevices>>): DiskChoice {
  if ('groupId' in rule) return pickDiskByGroup(devices, rule.groupId)
  if ('hints' in rule) return pickDiskByHints(devices, rule.hints)
  const { disk, skipped } = pickAutoDisk(devices)
  if (disk === undefined) {
    return { disk: undefined, refusal: `no disk is free for --disk auto (${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ') || 'no block device'})` }
  }
  const passed = skipped.filter((s) => s.reason.startsWith('in use'))
  const before = passed.length === 0 ? '' : `; ${passed.map((s) => `${s.name} is ${s.reason}`).join('; ')}`
  return { disk, why: `${disk.path} chosen by --disk auto, the first disk not in use${before}` }
}

/** The status's view of a chosen disk; `auto` is true when the agent chose it by --disk auto or a disk group. */
export function diskView (disk: AutoDisk, auto: boolean): DiskView {
  return { path: disk.path, auto, sizeBytes: disk.sizeBytes, model: disk.model }
}
