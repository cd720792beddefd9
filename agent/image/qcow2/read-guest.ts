import type { ByteSource } from '../memory-image.js'
import { errors } from '../../errors/install-error.js'
import { decompressCluster } from './decompress.js'
import type { Qcow2Image } from './open-qcow2.js'
import { guestExtents } from './tables.js'

/**
 * Reads guest bytes [offset, offset + length) of a checked qcow2 image, without any disk: what the
 * install looks at before writing (the partition table's sector size, the EFI system partition).
 * The walk starts at the L1 entry of `offset`, so a read costs one step per guest cluster it
 * covers (one per L1 range that reads as zeros), wherever it lies. Small reads only: compressed
 * clusters are decoded here, on the calling thread.
 */
export function readQcow2Guest (image: Qcow2Image, source: ByteSource, offset: number, length: number): Buffer {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > image.virtualSizeBytes) {
    throw new RangeError(`${length} bytes at ${offset} are outside the guest disk (${image.virtualSizeBytes} bytes)`)
  }
  const out = Buffer.alloc(length)
  const end = offset + length
  for (const extent of guestExtents(image, source, { start: offset, end }, { maxDataBytes: 8 * 1024 * 1024 })) {
    const from = Math.max(offset, extent.guestOffset)
    const to = Math.min(end, extent.guestOffset + extent.length)
    if (from >= to || extent.kind === 'zero') continue
    if (extent.kind === 'data') {
      const bytes = source.view(extent.hostOffset + (from - extent.guestOffset), to - from)
      if (bytes.length !== to - from) throw errors.qcow2Damaged(`data for guest offset ${from} lies past the end of the file`)
      bytes.copy(out, from - offset)
      continue
    }
    const cluster = Buffer.alloc(image.clusterBytes)
    try {
      decompressCluster(image.compressionType, source.view(extent.hostOffset, Math.min(extent.compressedBytes, image.fileBytes - extent.hostOffset)), cluster)
    } catch (err) {
      throw errors.qcow2Damaged(`compressed cluster for guest offset ${extent.guestOffset} does not decompress`, err)
    }
    cluster.copy(out, from - offset, from - extent.guestOffset, to - extent.guestOffset)
  }
  return out
}
