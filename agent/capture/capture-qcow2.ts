import { createHash } from 'node:crypto'
import type { BlockIo } from '../disk/partition-table.js'
import { DEFAULT_CLUSTER_BITS, Qcow2Layout, qcow2Stream } from '../image/qcow2/layout-qcow2.js'
import { findFreeSpace, type FreeSpace } from './free-space.js'
import { readCapturedCluster, scanDisk, type ScanOptions } from './scan-disk.js'

/**
 * A disk captured as a qcow2 v3 (uncompressed, sparse): the free space of its ext filesystems and
 * its all-zero clusters left out, everything else kept byte for byte. Two passes over the disk:
 * planCapture scans it (which clusters to keep), then captureStream gives the file front to back
 * (the metadata first: every offset is known after the scan), as often as asked (an upload that
 * failed starts again). Never writes to the disk: `io` is read only.
 */

export interface CapturePlan {
  io: BlockIo
  free: FreeSpace
  layout: Qcow2Layout
  /** What the scan found, for the result's notes. */
  notes: string[]
}

export interface CapturePlanOptions extends ScanOptions {
  clusterBits?: number
}

export async function planCapture (io: BlockIo, options: CapturePlanOptions = {}): Promise<CapturePlan> {
  const clusterBits = options.clusterBits ?? DEFAULT_CLUSTER_BITS
  const clusterBytes = 2 ** clusterBits
  const free = await findFreeSpace(io)
  const bitmap = await scanDisk(io, free, clusterBytes, options)
  const layout = new Qcow2Layout(io.sizeBytes, bitmap, clusterBits)
  const notes = [...free.notes, `${layout.dataClusters} of ${bitmap.clusters} clusters of ${clusterBytes} bytes kept`]
  return { io, free, layout, notes }
}

/** The qcow2 file's bytes, front to back (the second pass over the disk). */
export function captureStream (plan: CapturePlan): AsyncGenerator<Buffer> {
  const { io, free, layout } = plan
  return qcow2Stream(layout, async (cluster) => await readCapturedCluster(io, free, layout.clusterBytes, cluster))
}

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

export interface CaptureOptions extends CapturePlanOptions {
  digestType?: 'sha256' | 'sha512'
}

/** Both passes, the file's bytes handed to `write` in order, its digest computed over them. */
export async function captureQcow2 (io: BlockIo, write: (chunk: Buffer) => Promise<void>, options: CaptureOptions = {}): Promise<CaptureResult> {
  const plan = await planCapture(io, options)
  const hash = createHash(options.digestType ?? 'sha512')
  let bytes = 0
  for await (const chunk of captureStream(plan)) {
    options.signal?.throwIfAborted()
    hash.update(chunk)
    bytes += chunk.length
    await write(chunk)
  }
  return {
    bytes,
    digestHex: hash.digest('hex'),
    virtualSizeBytes: io.sizeBytes,
    dataClusters: plan.layout.dataClusters,
    clusterBytes: plan.layout.clusterBytes,
    freeBytes: plan.free.bytes,
    notes: plan.notes,
  }
}
