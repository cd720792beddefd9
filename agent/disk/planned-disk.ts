/**
 * The disk as the install will leave it, before any byte of it is written.
 *
 * The partition-table and ConfigDrive steps run against this in the verify step, so that every
 * check they make passes or fails while the real disk is still untouched; the writes they make are
 * recorded here and applied to the real disk, in order, only after the image itself is written.
 *
 * It reads the image's bytes where the image has them and zeros past the image's end: never what
 * the disk held before. An old disk's backup GPT at its last LBA, or any other stale structure past
 * the image, is not part of the image and must not be taken for it (a stale backup GPT adopted
 * would bring back the old partition table over the new bytes). The install makes that true on the
 * disk too: its plan's first write zeroes the disk's last MiB past the image (zeroTailPastImage).
 */
import { checkRange, type BlockIo } from './block-io.js'

export const TAIL_ZERO_BYTES = 1024 * 1024 // 1 MiB: the old backup GPT, md 1.0 superblocks, ZFS's last labels

export interface PlannedWrite {
  offset: number
  data: Buffer
}

/** Reads bytes [offset, offset + data.length) of the image; always within [0, imageBytes). */
export type ImageReader = (data: Uint8Array, offset: number) => Promise<void>

export class PlannedDisk implements BlockIo {
  /** The writes made so far, in order; the install applies them to the real disk in this order. */
  readonly writes: PlannedWrite[] = []

  constructor (
    readonly sizeBytes: number,
    readonly logicalSectorBytes: number,
    /** The image's length on the disk: the raw image's size, or the qcow2's virtual size. */
    readonly imageBytes: number,
    private readonly readImageBytes: ImageReader,
  ) {
    if (!Number.isSafeInteger(imageBytes) || imageBytes < 0 || imageBytes > sizeBytes) {
      throw new RangeError(`an image of ${imageBytes} bytes does not fit a disk of ${sizeBytes} bytes`)
    }
  }

  /** Plans zeros over the disk's last MiB past the image (the plan's first write): what this reads there is then true on the disk too. */
  zeroTailPastImage (): void {
    const tailStart = Math.max(this.imageBytes, this.sizeBytes - TAIL_ZERO_BYTES)
    if (tailStart < this.sizeBytes) this.writes.push({ offset: tailStart, data: Buffer.alloc(this.sizeBytes - tailStart) })
  }

  async read (data: Uint8Array, offset: number): Promise<void> {
    await this.readAsOf(data, offset, this.writes.length)
  }

  /** What `read` gave once only the first `writeCount` writes were made (what a later write covered). */
  async readAsOf (data: Uint8Array, offset: number, writeCount: number): Promise<void> {
    checkRange(this, offset, data.length)
    const inImage = Math.max(0, Math.min(data.length, this.imageBytes - offset))
    if (inImage > 0) await this.readImageBytes(data.subarray(0, inImage), offset)
    data.fill(0, inImage)
    const end = offset + data.length
    for (const write of this.writes.slice(0, writeCount)) {
      const from = Math.max(offset, write.offset)
      const to = Math.min(end, write.offset + write.data.length)
      if (from < to) data.set(write.data.subarray(from - write.offset, to - write.offset), from - offset)
    }
  }

  async write (data: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, data.length)
    this.writes.push({ offset, data: Buffer.from(data) })
  }
}
