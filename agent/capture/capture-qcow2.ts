import { createHash } from 'node:crypto'
import type { BlockIo } from '../disk/partition-table.js'
import { errors } from '../errors/install-error.js'
import { compressOnPool } from '../image/qcow2/compress-pool.js'
import type { CompressionType } from '../image/qcow2/decompress.js'
import { ClusterSizeChangedError, DEFAULT_CLUSTER_BITS, Qcow2Layout, qcow2Stream } from '../image/qcow2/layout-qcow2.js'
import { findFreeSpace, type FreeSpace } from './free-space.js'
import { CompressionMeter } from './measure-compression.js'
import { readCapturedCluster, scanDisk, type ScanOptions } from './scan-disk.js'

/**
 * A disk captured as a qcow2 v3 (sparse; its clusters compressed when asked): the free space of
 * its ext filesystems and its all-zero clusters left out, everything else kept byte for byte. Two
 * passes over the disk: planCapture scans it (which clusters to keep and, compressed, the size of
 * each once compressed), then captureStream gives the file front to back (the metadata first:
 * every offset is known after the scan), as often as asked (an upload that failed starts again).
 * A compressed capture compresses each cluster in both passes (the same bytes give the same
 * stream); a cluster whose size differs in the second means the disk changed under the capture,
 * and the stream fails (CAPTURE_DISK_CHANGED) rather than send a file whose tables point wrong.
 * Never writes to the disk: `io` is read only.
 */

export interface CapturePlan {
  io: BlockIo
  /** The disk's name in messages (its path). */
  diskName: string
  free: FreeSpace
  layout: Qcow2Layout
  /** What the scan found, for the result's notes. */
  notes: string[]
}

export interface CapturePlanOptions extends ScanOptions {
  clusterBits?: number
  /** Compress the clusters kept (qcow2 compression_type 0 or 1); default none. */
  compression?: CompressionType
  /** The disk's name in messages; default 'the disk'. */
  diskName?: string
}

export async function planCapture (io: BlockIo, options: CapturePlanOptions = {}): Promise<CapturePlan> {
  const clusterBits = options.clusterBits ?? DEFAULT_CLUSTER_BITS
  const clusterBytes = 2 ** clusterBits
  const free = await findFreeSpace(io)
  const meter = options.compression === undefined ? undefined : new CompressionMeter(options.compression, clusterBits)
  const onKept = meter === undefined ? undefined : async (_clusters: number[], data: Buffer[]): Promise<void> => { await meter.add(data) }
  const bitmap = await scanDisk(io, free, clusterBytes, { ...options, onKept })
  const layout = new Qcow2Layout(io.sizeBytes, bitmap, clusterBits, await meter?.finish())
  const notes = [...free.notes, `${layout.dataClusters} of ${bitmap.clusters} clusters of ${clusterBytes} bytes kept`]
  if (options.compression !== undefined) {
    notes.push(`${layout.compressedClusters} of them ${options.compression}-compressed, in ${layout.compressedBytes} bytes`)
  }
  return { io, diskName: options.diskName ?? 'the disk', free, layout, notes }
}

/** The qcow2 file's bytes, front to back (the second pass over the disk). */
export async function * captureStream (plan: CapturePlan): AsyncGenerator<Buffer> {
  const { io, free, layout } = plan
  const read = async (cluster: number): Promise<Buffer> => await readCapturedCluster(io, free, layout.clusterBytes, cluster)
  const type = layout.compression?.type
  const compressed = type === undefined
    ? undefined
    : {
        compress: async (batch: Buffer): Promise<Uint8Array[]> => await compressOnPool(type, batch, layout.clusterBytes),
        readInto: async (cluster: number, into: Buffer): Promise<void> => { await readCapturedCluster(io, free, layout.clusterBytes, cluster, into) },
      }
  try {
    yield * qcow2Stream(layout, read, compressed)
  } catch (err) {
    if (err instanceof ClusterSizeChangedError) throw errors.captureDiskChanged(plan.diskName, err.guestCluster, err)
    throw err
  }
}

export interface CaptureResult {
  /** Bytes of the qcow2 file. */
  bytes: number
  digestHex: string
  virtualSizeBytes: number
  dataClusters: number
  /** Of them, those stored compressed. */
  compressedClusters: number
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
    compressedClusters: plan.layout.compressedClusters,
    clusterBytes: plan.layout.clusterBytes,
    freeBytes: plan.free.bytes,
    notes: plan.notes,
  }
}
