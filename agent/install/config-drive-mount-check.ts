/**
 * The last check of an install, as ironic-python-agent makes it: the kernel mounts the new config-2
 * partition read-only, through its own device node and filesystem driver, and every file the agent
 * wrote must read back the same. The ConfigDrive's bytes were already read back and compared; this
 * proves the partition table, the partition's device and the filesystem as the kernel sees them.
 *
 * When the check cannot run (a regular file, no partition node, no mount(8), a kernel without the
 * filesystem, not root), that is a limit of the environment, not a failed install: the result says
 * `skipped` and why. When the mount succeeds and a file is missing or differs, the install fails:
 * `Could not create configdrive on disk.`
 */
import { promises as fs } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { ConfigDriveFile, ConfigDriveFilesystem } from '../configdrive/index.js'
import { rereadPartitionTable, type DiskKind } from '../disk/disk.js'
import { runCommand } from '../disk/run-command.js'
import { findPartitionNode, type PartitionSpan } from '../disk/partition-node.js'
import { errors } from '../errors/install-error.js'

/** The filesystem type mount(8) is given. */
export type MountFsType = 'iso9660' | 'vfat'

/** Mounts and unmounts; the default runs mount(8) and umount(8), the tests give a fake. */
export interface MountRunner {
  /** Mounts `device` read-only on the directory `target`. */
  mount: (device: string, target: string, fsType: MountFsType) => Promise<void>
  unmount: (target: string) => Promise<void>
}

export type ConfigDriveMountCheck =
  /** Mounted read-only from `device`; every file in `files` equal to what was written. */
  | { status: 'passed'; device: string; fsType: MountFsType; files: string[] }
  /** The check could not run in this environment; `reason` says why. */
  | { status: 'skipped'; reason: string }
  /** The target is a regular file: there is no partition device to mount. */
  | { status: 'not-applicable'; reason: string }

export type PartitionLocation =
  | { status: 'found'; device: string }
  | { status: 'skipped' | 'not-applicable'; reason: string }

export interface MountCheckOptions {
  runner?: MountRunner
  /** Finds the partition's device node; default: re-read the table of a block device, then look in sysfs (locatePartition). */
  locate?: (disk: MountCheckDisk, partition: PartitionSpan) => Promise<PartitionLocation>
  /** Whether this process may mount; default: its user id is 0. */
  isRoot?: () => boolean
  /** Where the temporary mount point is made; default the system's temporary directory. */
  tmpDir?: string
  /** How long to wait for the partition's node; default 5 s. */
  nodeTimeoutMs?: number
  logger?: Logger
}

export interface MountCheckDisk {
  path: string
  kind: DiskKind
}

export interface MountCheckTarget {
  disk: MountCheckDisk
  partition: PartitionSpan
  filesystem: ConfigDriveFilesystem
  /** The files as written. */
  files: readonly ConfigDriveFile[]
}

const COMMAND_TIMEOUT_MS = 20_000 // 20 s for mount or umount

function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** mount(8) and umount(8): util-linux's, or busybox's in the rescue image. */
export function commandMountRunner (commands: { mount: string; umount: string } = { mount: 'mount', umount: 'umount' }): MountRunner {
  return {
    mount: async (device, target, fsType) => { await runCommand(commands.mount, ['-o', 'ro', '-t', fsType, device, target], COMMAND_TIMEOUT_MS) },
    unmount: async (target) => {
      try {
        await runCommand(commands.umount, [target], COMMAND_TIMEOUT_MS)
      } catch (err) {
        // Busy (a reader still has a file open): detach it lazily rather than leave it mounted.
        await runCommand(commands.umount, ['-l', target], COMMAND_TIMEOUT_MS).catch(() => { throw err })
      }
    },
  }
}

/**
 * The default locator: a regular file has no partition devices; a block device's partition table is
 * re-read (the agent must have closed it: the kernel refuses while it is held with O_EXCL), then the
 * partition's node is awaited in sysfs and /dev.
 */
export async function locatePartition (disk: MountCheckDisk, partition: PartitionSpan, options: { timeoutMs?: number } = {}): Promise<PartitionLocation> {
  if (disk.kind !== 'block') return { status: 'not-applicable', reason: `${disk.path} is a regular file, not a block device` }
  try {
    await rereadPartitionTable(disk.path)
  } catch (err) {
    return { status: 'skipped', reason: `the kernel did not re-read the partition table (${describe(err)})` }
  }
  const node = await findPartitionNode(disk.path, partition, { timeoutMs: options.timeoutMs })
  return node.found ? { status: 'found', device: node.device } : { status: 'skipped', reason: node.reason }
}

/**
 * Mounts the config-2 partition read-only in a fresh temporary directory, compares every file
 * written, then unmounts and removes the directory, whatever happened. Resolves with the outcome
 * (passed, skipped, not applicable); rejects with CONFIGDRIVE_FAILED when the mounted filesystem
 * lacks a file or holds different bytes.
 */
export async function checkConfigDriveMount (target: MountCheckTarget, options: MountCheckOptions = {}): Promise<ConfigDriveMountCheck> {
  const { logger } = options
  const location = options.locate !== undefined
    ? await options.locate(target.disk, target.partition)
    : await locatePartition(target.disk, target.partition, { timeoutMs: options.nodeTimeoutMs })
  if (location.status !== 'found') return location
  const isRoot = options.isRoot ?? (() => userInfo().uid === 0)
  if (!isRoot()) return { status: 'skipped', reason: 'not running as root, mount needs it' }

  const runner = options.runner ?? commandMountRunner()
  const fsType: MountFsType = target.filesystem === 'fat' ? 'vfat' : 'iso9660'
  const { device } = location
  let dir: string
  try {
    dir = await fs.mkdtemp(join(options.tmpDir ?? tmpdir(), 'byoi-config-2-'))
  } catch (err) {
    return { status: 'skipped', reason: `cannot make a mount point (${describe(err)})` }
  }
  let mounted = false
  try {
    try {
      await runner.mount(device, dir, fsType)
      mounted = true
    } catch (err) {
      return { status: 'skipped', reason: `mount -o ro -t ${fsType} ${device} failed (${describe(err)})` }
    }
    const problems: string[] = []
    for (const file of target.files) {
      let data: Buffer
      try {
        data = await fs.readFile(join(dir, ...file.path.split('/')))
      } catch (err) {
        problems.push(`${file.path} cannot be read (${(err as { code?: unknown }).code?.toString() ?? describe(err)})`)
        continue
      }
      if (!data.equals(file.data)) problems.push(`${file.path} holds ${data.length} bytes that differ from the ${file.data.length} written`)
    }
    if (problems.length > 0) throw errors.configDriveFailed(new Error(`config-2 mounted from ${device} (${fsType}): ${problems.join('; ')}`))
    return { status: 'passed', device, fsType, files: target.files.map((file) => file.path) }
  } finally {
    // Always: a mount that failed may still have happened (a timed-out mount(8)); umount then only complains.
    await runner.unmount(dir).catch((err: unknown) => { if (mounted) logger?.warn({ err, dir }, 'could not unmount config-2') })
    await fs.rmdir(dir).catch((err: unknown) => logger?.warn({ err, dir }, 'could not remove the config-2 mount point'))
  }
}

/** The note an install gives about its mount check; none for a regular file, where it does not apply. */
export function mountCheckNote (check: ConfigDriveMountCheck): string | undefined {
  if (check.status === 'passed') {
    return `config-2 mount check passed: ${check.device} mounted read-only (${check.fsType}), ${check.files.length} files equal to what was written.`
  }
  if (check.status === 'skipped') return `config-2 mount check skipped: ${check.reason}; the ConfigDrive was read back and compared byte for byte instead.`
  return undefined
}
