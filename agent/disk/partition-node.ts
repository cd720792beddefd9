/**
 * The device node of one partition of a disk, found without udev: the disk's sysfs directory
 * (/sys/dev/block/MAJOR:MINOR) holds one child directory per partition the kernel knows (vda3,
 * nvme0n1p3, sda3), each with `partition` (its number), `start` and `size` (in 512-byte units,
 * whatever the sector size) and `dev` (MAJOR:MINOR); devtmpfs makes /dev/NAME for each.
 */
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { deviceNumber } from './disk.js'

/** A partition as written: its number in the table and where it lies on the disk. */
export interface PartitionSpan {
  number: number
  offsetBytes: number
  sizeBytes: number
}

export interface FindPartitionNodeOptions {
  /** How long to wait for the kernel's partition and its node; default 5 s. */
  timeoutMs?: number
  /** Time between two looks; default 100 ms. */
  pollMs?: number
  /** Where sysfs is mounted; default /sys (the tests point it at a directory tree). */
  sysRoot?: string
  /** Where devtmpfs is mounted; default /dev. */
  devRoot?: string
}

export type PartitionNode =
  | { found: true; device: string }
  | { found: false; reason: string }

const SYSFS_UNIT_BYTES = 512 // sysfs `start` and `size` count 512-byte units

async function readText (path: string): Promise<string | undefined> {
  try {
    return (await fs.readFile(path, 'utf8')).trim()
  } catch {
    return undefined
  }
}

/** One look: the node when the kernel shows the partition where it was written, else why not. */
async function lookOnce (diskPath: string, diskDir: string, partition: PartitionSpan, devRoot: string): Promise<PartitionNode> {
  let children: string[]
  try {
    children = await fs.readdir(diskDir)
  } catch (err) {
    return { found: false, reason: `cannot list ${diskDir}: ${err instanceof Error ? err.message : String(err)}` }
  }
  for (const name of children) {
    if (await readText(join(diskDir, name, 'partition')) !== String(partition.number)) continue
    const start = Number(await readText(join(diskDir, name, 'start')))
    const size = Number(await readText(join(diskDir, name, 'size')))
    if (start * SYSFS_UNIT_BYTES !== partition.offsetBytes || size * SYSFS_UNIT_BYTES !== partition.sizeBytes) {
      // A table the kernel read before ours (the re-read failed, or has not happened yet).
      return {
        found: false,
        reason: `the kernel's partition ${partition.number} of ${diskPath} (${name}) ` +
          `lies at bytes ${start * SYSFS_UNIT_BYTES} + ${size * SYSFS_UNIT_BYTES}, not at ${partition.offsetBytes} + ${partition.sizeBytes} as written`,
      }
    }
    const dev = await readText(join(diskDir, name, 'dev'))
    const node = join(devRoot, name)
    let stat
    try {
      stat = await fs.stat(node)
    } catch {
      return { found: false, reason: `no device node ${node} for partition ${partition.number} of ${diskPath}` }
    }
    if (!stat.isBlockDevice() || deviceNumber(stat.rdev) !== dev) {
      return { found: false, reason: `${node} is not block device ${dev ?? '?'} (partition ${partition.number} of ${diskPath})` }
    }
    return { found: true, device: node }
  }
  return { found: false, reason: `the kernel shows no partition ${partition.number} of ${diskPath}` }
}

/**
 * Waits (bounded) for the kernel to show partition `partition.number` of the block device at
 * `diskPath` at the offset and size it was written with, and for its node under /dev. Never
 * throws: when the node does not appear in time, says why.
 */
export async function findPartitionNode (diskPath: string, partition: PartitionSpan, options: FindPartitionNodeOptions = {}): Promise<PartitionNode> {
  const timeoutMs = options.timeoutMs ?? 5000 // 5 s
  const pollMs = options.pollMs ?? 100 // 100 ms
  const sysRoot = options.sysRoot ?? '/sys'
  const devRoot = options.devRoot ?? '/dev'
  let rdev: number
  try {
    const stat = await fs.stat(diskPath)
    if (!stat.isBlockDevice()) return { found: false, reason: `${diskPath} is not a block device` }
    rdev = stat.rdev
  } catch (err) {
    return { found: false, reason: `cannot stat ${diskPath}: ${err instanceof Error ? err.message : String(err)}` }
  }
  const diskDir = join(sysRoot, 'dev', 'block', deviceNumber(rdev))
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const look = await lookOnce(diskPath, diskDir, partition, devRoot)
    if (look.found || Date.now() >= deadline) return look.found ? look : { found: false, reason: `${look.reason} (waited ${timeoutMs / 1000} s)` }
    await sleep(pollMs)
  }
}
