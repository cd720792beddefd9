import { mkdtemp, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { readBytes, type BlockIo } from '../disk/block-io.js'
import { listPartitions, type ListedPartition } from '../disk/partition-list.js'
import { errors, isInstallError } from '../errors/install-error.js'
import { resolveGuestPath } from './guest-path.js'
import { commandGuestMounter, guestFsTypeAt, type GuestFsType, type GuestMounter } from './guest-mounter.js'
import { scrubGuest, type ScrubOptions } from './scrub-guest.js'

/**
 * An install's scrub (the payload's `scrub`): after the image and its tables are written, before
 * its first MiB (so the disk is not bootable yet), the image's root filesystem is found, mounted
 * in the rescue system and made a fresh clone (scrub-guest). The root filesystem: of the image's
 * partitions holding ext2/3/4, XFS or Btrfs (by their superblock's magic), those of the GPT's
 * Linux root types first, the first whose mount holds /etc/os-release (or /usr/lib/os-release).
 * Each is mounted read only to look, the root then remounted read-write. Any failure is
 * SCRUB_FAILED (the install's rollback then zeroes the disk's first and last MiB); the loop
 * device and the mount are always undone.
 */

export interface ScrubImageOptions extends ScrubOptions {
  /** The disk's path (the loop device's backing). */
  diskPath: string
  /** The image as it will be: reads below `head.length` from `head`. */
  io: BlockIo
  /** The image's first MiB as it will be written (the partition table). */
  head: Buffer
  mounter?: GuestMounter
  tmpDir?: string
  signal?: AbortSignal
  logger?: Logger
}

/** GPT partition types of a Linux root filesystem (x86-64, x86, ARM64, ARM), Discoverable Partitions Specification. */
const ROOT_TYPES = new Set([
  '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709', '44479540-F297-41B2-9AF7-D131D5F0458A',
  'B921B045-1DF0-41C3-AF44-4C6F280D3FAE', '69DAD710-2CE4-4E3C-B16C-21A1D49ABED3',
])

interface Candidate { partition: ListedPartition; fsType: GuestFsType }

export async function scrubImage (options: ScrubImageOptions): Promise<string[]> {
  try {
    return await scrub(options)
  } catch (err) {
    if (isInstallError(err) || options.signal?.aborted === true) throw err
    throw errors.scrubFailed(err instanceof Error ? err.message : String(err), err)
  }
}

async function scrub (options: ScrubImageOptions): Promise<string[]> {
  const { io, head, logger } = options
  const mounter = options.mounter ?? commandGuestMounter()
  const list = await listPartitions(io, head)
  if (list.problem !== undefined) throw errors.scrubFailed(list.problem, new Error(list.problem))
  const read = async (offset: number, length: number): Promise<Buffer> => await readBytes(io, offset, length)
  const candidates: Candidate[] = []
  for (const partition of list.partitions) {
    const fsType = await guestFsTypeAt(read, partition.start, partition.end)
    if (fsType !== undefined) candidates.push({ partition, fsType })
  }
  const isRootType = (c: Candidate): boolean => c.partition.type !== undefined && 'gpt' in c.partition.type && ROOT_TYPES.has(c.partition.type.gpt)
  candidates.sort((a, b) => Number(isRootType(b)) - Number(isRootType(a)))
  if (candidates.length === 0) throw errors.scrubFailed('no ext4, XFS or Btrfs filesystem in the image', new Error('no candidate'))
  const looked: string[] = []
  for (const candidate of candidates) {
    options.signal?.throwIfAborted()
    const name = candidate.partition.number === 0 ? 'the whole disk' : `partition ${candidate.partition.number}`
    if (candidate.partition.start < head.length) {
      // Its first bytes are in the held-back head, not on the disk: the kernel would read zeros there.
      looked.push(`${name} starts inside the first MiB, written last`)
      continue
    }
    const notes = await withMounted(options, mounter, candidate, name, async (dir) => {
      const release = await resolveGuestPath(dir, '/etc/os-release')
      const usrRelease = await resolveGuestPath(dir, '/usr/lib/os-release')
      const isRoot = (release.kind === 'found' && release.exists) || (usrRelease.kind === 'found' && usrRelease.exists)
      if (!isRoot) return undefined
      logger?.info({ partition: candidate.partition.number, fsType: candidate.fsType }, 'scrub: root filesystem found')
      await mounter.remountReadWrite(dir)
      return [`scrub: the root filesystem is ${name} (${candidate.fsType})`, ...await scrubGuest(dir, options)]
    })
    if (notes !== undefined) return notes
    looked.push(`${name} (${candidate.fsType}) has no /etc/os-release`)
  }
  const reason = `no root filesystem in the image (${looked.join('; ')})`
  throw errors.scrubFailed(reason, new Error(reason))
}

/** `use` run on the candidate mounted read only at a fresh folder; everything undone after, whatever happened. */
async function withMounted<T> (
  options: ScrubImageOptions, mounter: GuestMounter, candidate: Candidate, name: string, use: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), 'byoi-scrub-'))
  let loop: string | undefined
  let mounted = false
  try {
    loop = await mounter.attach(options.diskPath, candidate.partition.start)
    try {
      await mounter.mount(loop, dir, candidate.fsType, { readOnly: true })
    } catch (err) {
      const reason = `${name} (${candidate.fsType}) could not be mounted: ${err instanceof Error ? err.message : String(err)}`
      throw errors.scrubFailed(reason, err)
    }
    mounted = true
    return await use(dir)
  } finally {
    // Undone in order, each tried whatever the one before did; a failure is logged and fails the scrub
    // (a mount or a loop device left behind would hold the disk).
    const undo: Array<() => Promise<void>> = []
    if (mounted) undo.push(async () => { await mounter.unmount(dir) })
    if (loop !== undefined) {
      const device = loop
      undo.push(async () => { await mounter.detach(device) })
    }
    undo.push(async () => { await rmdir(dir) })
    let failure: Error | undefined
    for (const step of undo) {
      try {
        await step()
      } catch (err) {
        options.logger?.error({ err, dir, loop }, 'scrub: could not undo a mount')
        failure ??= err instanceof Error ? err : new Error(String(err))
      }
    }
    if (failure !== undefined) {
      // eslint-disable-next-line no-unsafe-finally -- a mount left behind outweighs the result
      throw errors.scrubFailed(`the mount could not be undone (${failure.message})`, failure)
    }
  }
}
