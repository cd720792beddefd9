import { BackgroundSync } from '../disk/background-sync.js'
import { InFlight } from '../disk/in-flight.js'
import type { MemoryImage } from './memory-image.js'
import { errors } from '../errors/install-error.js'

const MAX_IN_FLIGHT = 3 // 16 MiB slabs being written at once

/** Where a raw image goes: the install's target, which keeps the image's first MiB back itself. */
export interface RawWriteTarget {
  write (data: Uint8Array, offset: number): Promise<void>
  sync (): Promise<void>
}

export interface WriteFromMemoryOptions {
  onProgress?: (writtenBytes: number) => void
  signal?: AbortSignal
}

/**
 * Writes a verified raw image held in memory to the target, slab by slab with a few in flight (the
 * copies into the page cache overlap, and the flushes with them), and syncs. I/O failures are
 * `Can't write raw on disk.`; an abort ends with the signal's reason once the writes under way end.
 */
export async function writeRawFromMemory (target: RawWriteTarget, image: MemoryImage, options: WriteFromMemoryOptions = {}): Promise<void> {
  let written = 0
  const backgroundSync = new BackgroundSync(target)
  const writes = new InFlight(MAX_IN_FLIGHT)
  try {
    for (const piece of image.pieces()) {
      options.signal?.throwIfAborted()
      await writes.add(async () => {
        await target.write(piece.data, piece.offset)
        written += piece.data.length
        backgroundSync.wrote(piece.data.length)
        options.onProgress?.(written)
      })
    }
    await writes.drain()
    await backgroundSync.settle()
    await target.sync()
  } catch (err) {
    await writes.settle()
    if (options.signal?.aborted === true) throw err
    throw errors.rawWriteFailed(err)
  }
}
