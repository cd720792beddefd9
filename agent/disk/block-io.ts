/**
 * Reads and writes of the installed image while its head is still in memory.
 *
 * The install keeps the image's first MiB (the "head": MBR, primary GPT header and entries) in a
 * Buffer and writes it last, so that a disk is never bootable before the whole image is verified.
 * Everything past the head is already on the disk. The partition-table code therefore reads and
 * writes through these two helpers: bytes below `head.length` live in the head, the rest on the disk.
 */

/** What the partition-table code needs of a disk; `Disk` (disk.ts) has this shape. */
export interface BlockIo {
  readonly sizeBytes: number
  readonly logicalSectorBytes: number
  read (data: Uint8Array, offset: number): Promise<void>
  write (data: Uint8Array, offset: number): Promise<void>
}

function checkRange (io: BlockIo, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > io.sizeBytes) {
    throw new RangeError(`${length} bytes at ${offset} are outside the disk (${io.sizeBytes} bytes)`)
  }
}

/** The image's bytes [offset, offset + length): from the head below `head.length`, from the disk above. */
export async function readImage (head: Buffer, io: BlockIo, offset: number, length: number): Promise<Buffer> {
  checkRange(io, offset, length)
  const out = Buffer.alloc(length)
  const inHead = Math.max(0, Math.min(head.length, offset + length) - offset)
  if (inHead > 0) head.copy(out, 0, offset, offset + inHead)
  if (inHead < length) await io.read(out.subarray(inHead), offset + inHead)
  return out
}

/** Writes `data` at `offset` of the image: into the head below `head.length`, onto the disk above. */
export async function writeImage (head: Buffer, io: BlockIo, data: Uint8Array, offset: number): Promise<void> {
  checkRange(io, offset, data.length)
  const inHead = Math.max(0, Math.min(head.length, offset + data.length) - offset)
  if (inHead > 0) head.set(data.subarray(0, inHead), offset)
  if (inHead < data.length) await io.write(data.subarray(inHead), offset + inHead)
}
