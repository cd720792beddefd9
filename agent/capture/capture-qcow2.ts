import { createHash } from 'node:crypto'
import type { BlockIo } from '../disk/partition-table.js'
import { DEFAULT_CLUSTER_BITS, Qcow2Layout, qcow2Stream } from '../image/qcow2/layout-qcow2.js'
import { findFreeSpace } from './free-space.js'
import { readCapturedCluster, scanDisk, type ScanOptions } from './scan-disk.js'

/**
 * A disk captured as a qcow2 v3 (uncompressed, sparse): the free space of its ext filesystems and
 * its all-zero clusters left out, everything else kept byte for byte. Two passes over the disk:
 * the scan (which clusters to keep), then the file written front to back into `write` (the
 * metadata first: every offset is known after the scan), its digest computed over the bytes as
 * written. Never writes to the disk: `io` is read only.
 */

export interface CaptureResult {
  /** Bytes of the qcow2 file. */
  bytes: number
  digestHex: string
  virtualSizeBytes: number
  dataClusters: number
  clusterBytes: number
  /** Free bytes of ext filesystems left out. */
  freeBytes: number
  notes: string[]
}

export interface CaptureOptions extends ScanOptions {
  digestType?: 'sha256' | 'sha512'
  clusterBits?: number
}

export async function captureQcow2 (io: BlockIo, write: (chunk: Buffer) => Promise<void>, options: CaptureOptions = {}): Promise<CaptureResult> {
  const clusterBits = options.clusterBits ?? DEFAULT_CLUSTER_BITS
  const clusterBytes = 2 ** clusterBits
  const free = await findFreeSpace(io)
  const bitmap = await scanDisk(io, free, clusterBytes, options)
  const layout = new Qcow2Layout(io.sizeBytes, bitmap, clusterBits)
  const hash = createHash(options.digestType ?? 'sha512')
  let bytes = 0
  for await (const chunk of qcow2Stream(layout, async (cluster) => await readCapturedCluster(io, free, clusterBytes, cluster))) {
    options.signal?.throwIfAborted()
    hash.update(chunk)
    bytes += chunk.length
    await write(chunk)
  }
  return {
    bytes,
    digestHex: hash.digest('hex'),
    virtualSizeBytes: io.sizeBytes,
    dataClusters: layout.dataClusters,
    clusterBytes,
    freeBytes: free.bytes,
    notes: [...free.notes, `${layout.dataClusters} of ${bitmap.clusters} clusters of ${clusterBytes} bytes kept`],
  }
}
