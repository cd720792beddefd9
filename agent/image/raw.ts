import { BackgroundSync } from '../disk/background-sync.js'
import type { Disk } from '../disk/disk.js'
import { HEAD_BYTES } from '../disk/sequential-writer.js'
import type { MemoryImage } from './memory-image.js'
import { errors } from '../errors/install-error.js'

const MAX_IN_FLIGHT = 3 // 16 MiB slabs being written at once

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
  const backgroundSync = new BackgroundSync(disk)
  const inFlight = new Set<Promise<void>>()
  try {
    for (const piece of image.pieces()) {
      options.signal?.throwIfAborted()
      const skip = Math.max(0, HEAD_BYTES - piece.offset)
      if (skip >= piece.data.length) continue
      const length = piece.data.length - skip
      // A few slabs in flight: the copies into the page cache overlap, and the flushes with them.
      const write: Promise<void> = disk.write(piece.data.subarray(skip), piece.offset + skip).then(() => {
        inFlight.delete(write)
        written += length
        backgroundSync.wrote(length)
        options.onProgress?.(written)
      })
      inFlight.add(write)
      if (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight)
    }
    await Promise.all(inFlight)
    await backgroundSync.settle()
    await disk.sync()
  } catch (err) {
    await Promise.allSettled(inFlight)
    if (options.signal?.aborted === true) throw err
    throw errors.rawWriteFailed(err)
  }
  return head
}
