import type { Logger } from 'pino'
import type { Disk } from './disk.js'

/**
 * The first MiB of a disk: the MBR, the primary GPT and the boot code. An install holds the image's
 * first MiB back and writes it last, so a disk whose first MiB is not (yet) the image's cannot
 * boot the half-written or unverified rest; the last MiB holds the backup GPT.
 */
export const HEAD_BYTES = 1024 * 1024 // 1 MiB

/**
 * Zeroes the first and the last MiB of the disk: no MBR, no primary GPT, no backup GPT (an old one
 * at the end could otherwise bring back a stale table), so neither BIOS nor UEFI firmware can boot
 * what is half-written or unverified. Returns whether it was done (a failure is logged).
 */
export async function makeUnbootable (disk: Disk, logger?: Logger): Promise<boolean> {
  const span = Math.min(HEAD_BYTES, disk.sizeBytes)
  try {
    await disk.zero(0, span)
    await disk.zero(disk.sizeBytes - span, span)
    await disk.sync()
    return true
  } catch (err) {
    logger?.error({ err }, 'could not zero the first and last MiB of the disk')
    return false
  }
}
