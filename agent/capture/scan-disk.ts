import type { BlockIo } from '../disk/partition-table.js'
import { ClusterBitmap } from '../image/cluster-bitmap.js'
import type { FreeSpace } from './free-space.js'

/**
 * A capture's first pass: which clusters of the disk carry data. A cluster is left out when its
 * bytes, the free ones zeroed, are all zero; a run of clusters wholly free is not even read. The
 * second pass (readCapturedCluster) reads the clusters kept, the free bytes zeroed the same way,
 * so deleted data never leaves the server. `onKept` sees the clusters kept as they are read (a
 * compressed capture measures them), each 4 MiB read at once; its views are valid until it resolves.
 */

/** Bytes read at a time: 4 MiB, a whole number of clusters of any size up to 2 MiB. */
const READ_BYTES = 4 * 1024 * 1024

export interface ScanProgress {
  bytes: number
  totalBytes: number
}

export interface ScanOptions {
  signal?: AbortSignal
  onProgress?: (progress: ScanProgress) => void
  /** The clusters kept of each read, their numbers and bytes (the last one zero-padded to a whole cluster). */
  onKept?: (clusters: number[], data: Buffer[]) => Promise<void>
}

export async function scanDisk (io: BlockIo, free: FreeSpace, clusterBytes: number, options: ScanOptions = {}): Promise<ClusterBitmap> {
  const clusters = Math.ceil(io.sizeBytes / clusterBytes)
  const bitmap = new ClusterBitmap(clusters)
  const zero = Buffer.alloc(clusterBytes)
  const chunk = Buffer.allocUnsafe(READ_BYTES)
  for (let offset = 0; offset < io.sizeBytes; offset += READ_BYTES) {
    options.signal?.throwIfAborted()
    const length = Math.min(READ_BYTES, io.sizeBytes - offset)
    options.onProgress?.({ bytes: offset, totalBytes: io.sizeBytes })
    if (free.covers(offset, offset + length)) continue
    const data = chunk.subarray(0, length)
    await io.read(data, offset)
    free.zeroIn(data, offset)
    const kept: number[] = []
    const keptData: Buffer[] = []
    for (let at = 0; at < length; at += clusterBytes) {
      const piece = data.subarray(at, Math.min(at + clusterBytes, length))
      if (piece.equals(zero.subarray(0, piece.length))) continue
      const cluster = (offset + at) / clusterBytes
      bitmap.set(cluster)
      if (options.onKept === undefined) continue
      kept.push(cluster)
      keptData.push(piece.length === clusterBytes ? piece : Buffer.concat([piece, zero.subarray(piece.length)]))
    }
    if (kept.length > 0) await options.onKept?.(kept, keptData)
  }
  options.onProgress?.({ bytes: io.sizeBytes, totalBytes: io.sizeBytes })
  return bitmap
}

/** Cluster `cluster` of the disk as captured: its free bytes zeroed, past the disk's end zeros; in `into` when given. */
export async function readCapturedCluster (io: BlockIo, free: FreeSpace, clusterBytes: number, cluster: number, into?: Buffer): Promise<Buffer> {
  const out = into ?? Buffer.alloc(clusterBytes)
  if (out.length !== clusterBytes) throw new RangeError(`a cluster of ${clusterBytes} bytes read into ${out.length}`)
  const offset = cluster * clusterBytes
  const length = Math.min(clusterBytes, io.sizeBytes - offset)
  await io.read(out.subarray(0, length), offset)
  free.zeroIn(out.subarray(0, length), offset)
  if (into !== undefined) out.fill(0, length)
  return out
}
