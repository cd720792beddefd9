import type { Disk } from '../disk/disk.js'
import { HEAD_BYTES } from '../disk/sequential-writer.js'
import type { MemoryImage } from './memory-image.js'
import { errors } from '../report/install-error.js'

export interface WriteFromMemoryOptions {
  onProgress?: (writtenBytes: number) => void
  signal?: AbortSignal
}

/**
 * Writes a verified raw image held in memory to the disk, all but its first MiB, and syncs.
 * Returns the first MiB (the head), which the install writes last.
 */
export async function writeRawFromMemory (disk: Disk, image: MemoryImage, options: WriteFromMemoryOptions = {}): Promise<Buffer> {
  if (image.sizeBytes > disk.sizeBytes) throw errors.imageTooBigForDisk(image.sizeBytes, disk.path, disk.sizeBytes)
  const head = image.read(0, HEAD_BYTES)
  let written = head.length
  try {
    for (const piece of image.pieces()) {
      options.signal?.throwIfAborted()
      const skip = Math.max(0, HEAD_BYTES - piece.offset)
      if (skip >= piece.data.length) continue
      await disk.write(piece.data.subarray(skip), piece.offset + skip)
      written += piece.data.length - skip
      options.onProgress?.(written)
    }
    await disk.sync()
  } catch (err) {
    if (options.signal?.aborted === true) throw err
    throw errors.rawWriteFailed(err)
  }
  return head
}
