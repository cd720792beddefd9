/**
 * Reads and writes of an image whose first MiB (the "head": MBR, primary GPT header and entries)
 * is kept in memory.
 *
 * The install holds the image's head back and writes it last, so that a disk is never bootable
 * before the whole image is verified; everything past the head is on the disk (or, while the
 * install is planned, in a PlannedDisk). The partition-table, EFI and ConfigDrive code therefore
 * take one `ImageIo`: bytes below `head.length` live in the head, the rest below it.
 */

/** What the partition-table code needs of a disk; `Disk` (disk.ts) has this shape. */
export interface BlockIo {
  readonly sizeBytes: number
  readonly logicalSectorBytes: number
  read (data: Uint8Array, offset: number): Promise<void>
  write (data: Uint8Array, offset: number): Promise<void>
}

/** A BlockIo with the image's head overlaid: `read` and `write` below `head.length` go to `head`. */
export interface ImageIo extends BlockIo {
  readonly head: Buffer
}

/** Bytes [offset, offset + length) lie within `io` (the one range check of every BlockIo); a RangeError otherwise. */
export function checkRange (io: { readonly sizeBytes: number }, offset: number, length: number, name = 'the disk'): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > io.sizeBytes) {
    throw new RangeError(`${length} bytes at ${offset} are outside ${name} (${io.sizeBytes} bytes)`)
  }
}

/** `head` laid over `io`: the one overlay the install and the tests use. */
export class HeadOverlay implements ImageIo {
  constructor (readonly head: Buffer, private readonly io: BlockIo) {}

  get sizeBytes (): number {
    return this.io.sizeBytes
  }

  get logicalSectorBytes (): number {
    return this.io.logicalSectorBytes
  }

  /** The image's bytes [offset, offset + data.length): from the head below `head.length`, from `io` above. */
  async read (data: Uint8Array, offset: number): Promise<void> {
    checkRange(this.io, offset, data.length)
    const inHead = Math.max(0, Math.min(this.head.length, offset + data.length) - offset)
    if (inHead > 0) data.set(this.head.subarray(offset, offset + inHead))
    if (inHead < data.length) await this.io.read(data.subarray(inHead), offset + inHead)
  }

  /** Writes `data` at `offset` of the image: into the head below `head.length`, to `io` above. */
  async write (data: Uint8Array, offset: number): Promise<void> {
    checkRange(this.io, offset, data.length)
    const inHead = Math.max(0, Math.min(this.head.length, offset + data.length) - offset)
    if (inHead > 0) this.head.set(data.subarray(0, inHead), offset)
    if (inHead < data.length) await this.io.write(data.subarray(inHead), offset + inHead)
  }
}

/** Bytes [offset, offset + length) of `io`, in a new Buffer. */
export async function readBytes (io: BlockIo, offset: number, length: number): Promise<Buffer> {
  checkRange(io, offset, length)
  const out = Buffer.alloc(length)
  await io.read(out, offset)
  return out
}
