import { runCommand } from '../disk/run-command.js'

/** The filesystems a scrub mounts (ext2/3/4 are mounted as ext4). */
export type GuestFsType = 'ext4' | 'xfs' | 'btrfs'

/**
 * How a scrub reaches the image's root filesystem while the image's first MiB is still held back
 * (no partition table on the disk yet, so no partition node): a loop device over the disk at the
 * partition's offset, mounted with nodev, nosuid and noexec. The default runs losetup, modprobe,
 * mount and umount (util-linux's, or busybox's in the rescue image: both take `losetup -f` to
 * name a free device and `losetup -o OFFSET DEVICE FILE`); tests may give another.
 */
export interface GuestMounter {
  /** A loop device over `backing` from byte `offset`; its name. */
  attach: (backing: string, offset: number) => Promise<string>
  detach: (loop: string) => Promise<void>
  mount: (device: string, dir: string, fsType: GuestFsType, options: { readOnly: boolean }) => Promise<void>
  /** Read-only to read-write, in place. */
  remountReadWrite: (dir: string) => Promise<void>
  unmount: (dir: string) => Promise<void>
}

const COMMAND_TIMEOUT_MS = 60_000 // 60 s: an ext4 journal replayed at mount, a large XFS log

export function commandGuestMounter (): GuestMounter {
  return {
    attach: async (backing, offset) => {
      await runCommand('modprobe', ['loop'], COMMAND_TIMEOUT_MS).catch(() => {}) // built in, or loaded already
      // `losetup -f` names the first free device; another process may take it first: try again.
      let lastError: unknown
      for (let attempt = 0; attempt < 5; attempt++) {
        const loop = (await runCommand('losetup', ['-f'], COMMAND_TIMEOUT_MS)).trim()
        if (!/^\/dev\/loop\d+$/.test(loop)) throw new Error(`losetup -f named no loop device (${JSON.stringify(loop.slice(0, 40))})`)
        try {
          await runCommand('losetup', ['-o', String(offset), loop, backing], COMMAND_TIMEOUT_MS)
          return loop
        } catch (err) {
          lastError = err
        }
      }
      throw lastError
    },
    detach: async (loop) => { await runCommand('losetup', ['-d', loop], COMMAND_TIMEOUT_MS) },
    mount: async (device, dir, fsType, options) => {
      await runCommand('modprobe', [fsType], COMMAND_TIMEOUT_MS).catch(() => {}) // built in, loaded already, or mount asks the kernel
      await runCommand('mount', ['-t', fsType, '-o', `${options.readOnly ? 'ro' : 'rw'},nodev,nosuid,noexec`, device, dir], COMMAND_TIMEOUT_MS)
    },
    remountReadWrite: async (dir) => { await runCommand('mount', ['-o', 'remount,rw', dir], COMMAND_TIMEOUT_MS) },
    unmount: async (dir) => { await runCommand('umount', [dir], COMMAND_TIMEOUT_MS) },
  }
}

/** The filesystem whose superblock starts the partition at `start`, by its magic; undefined for any other. */
export async function guestFsTypeAt (read: (offset: number, length: number) => Promise<Buffer>, start: number, end: number): Promise<GuestFsType | undefined> {
  const length = end - start
  if (length >= 2048) {
    const ext = await read(start + 1024, 1024)
    if (ext.readUInt16LE(56) === 0xef53) return 'ext4' // s_magic
  }
  if (length >= 512 && (await read(start, 4)).toString('latin1') === 'XFSB') return 'xfs'
  if (length >= 0x10048 && (await read(start + 0x10040, 8)).toString('latin1') === '_BHRfS_M') return 'btrfs'
  return undefined
}
