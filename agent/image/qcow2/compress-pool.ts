import { availableParallelism } from 'node:os'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CompressionType } from './decompress.js'
import { WorkerPool } from './worker-pool.js'

/**
 * Clusters compressed on worker threads (compress-cluster.ts's compressCluster), so that both cores
 * of a small rescue system compress while the main thread reads the disk and sends the file. Each
 * request carries a batch of clusters (a few MiB: one message per thread per batch), copied into
 * one buffer transferred to the thread; their compressed lengths come back, and their bytes when
 * asked (a capture's first pass wants only the lengths).
 *
 * Measured (Node 20, 2 cores shared with other work): one thread compresses 64 KiB clusters of
 * system files at 355 MiB/s with zstd 3 (175 MiB/s in 4 KiB clusters), 58 MiB/s with deflate 6
 * (42). A 2 GiB disk's capture, both passes, took 12.9 s (12.5–14.9) with this pool at load 5 to
 * 7 against 13.4 s (12.8–14.3) compressing on the main thread, its peak RSS 205–230 MiB against
 * 115–122 MiB: on a saturated machine the threads gain nothing; at load 2 to 4 the pool's capture
 * took 7.5–8.9 s where the main thread's takes its CPU time, 11–12 s. A rescue system is idle.
 *
 * The threads are a WorkerPool's, as the decompression pool's.
 */

export interface CompressRequest {
  id: number
  compressionType: CompressionType
  /** The clusters, one after the other. */
  input: Uint8Array
  clusterBytes: number
  keepOutput: boolean
}

export type CompressReply =
  | { id: number; lengths: Int32Array; output: Uint8Array }
  | { id: number; error: string }

export interface CompressedBatch {
  /** Each cluster's compressed length. */
  lengths: Int32Array
  /** Their compressed bytes, one after the other (empty unless asked for). */
  output: Buffer
}

/** compress-worker.ts beside this file, or compress-worker.js once compiled. */
const WORKER_URL = new URL(`./compress-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url)

export class CompressPool {
  private readonly pool: WorkerPool<CompressRequest, CompressReply, CompressedBatch>

  constructor (readonly size: number) {
    this.pool = new WorkerPool<CompressRequest, CompressReply, CompressedBatch>(size, WORKER_URL, 'compression', (reply) => 'error' in reply
      ? new Error(`compression failed: ${reply.error}`)
      : { lengths: reply.lengths, output: Buffer.from(reply.output.buffer, reply.output.byteOffset, reply.output.byteLength) })
  }

  /** Compresses `clusters` (each `clusterBytes` long, copied before this returns a promise) on the least busy thread. */
  async compress (compressionType: CompressionType, clusters: Uint8Array[], clusterBytes: number, options: { keepOutput: boolean }): Promise<CompressedBatch> {
    const input = new Uint8Array(clusters.length * clusterBytes)
    clusters.forEach((cluster, i) => {
      if (cluster.length !== clusterBytes) throw new RangeError(`a cluster of ${cluster.length} bytes, not ${clusterBytes}`)
      input.set(cluster, i * clusterBytes)
    })
    return await this.compressOwned(compressionType, input, clusterBytes, options)
  }

  /**
   * Compresses the clusters in `input` (a whole number of them, from the start of its buffer),
   * without copying them: the buffer is handed to the thread, unusable here from this call on.
   */
  async compressOwned (compressionType: CompressionType, input: Uint8Array, clusterBytes: number, options: { keepOutput: boolean }): Promise<CompressedBatch> {
    const buffer = input.buffer
    // From the start of a buffer of its own (Buffer.allocUnsafeSlow): never a view into node's shared pool.
    if (!(buffer instanceof ArrayBuffer) || input.byteOffset !== 0 || input.length % clusterBytes !== 0) {
      throw new RangeError(`a batch of ${input.length} bytes at ${input.byteOffset} of a buffer not its own`)
    }
    const request = (id: number): CompressRequest => ({ id, compressionType, input, clusterBytes, keepOutput: options.keepOutput })
    return await this.pool.run(request, [buffer])
  }

  /** Stops the threads (requests under way fail); the next request starts new ones. */
  async close (): Promise<void> {
    await this.pool.close()
  }
}

/** The process's pool: two threads at most, both cores of a small rescue system. */
export const compressPool = new CompressPool(Math.min(2, availableParallelism()))

/** The clusters of `batch` compressed on the pool (its buffer handed over), each stream on its own (a view into the reply). */
export async function compressOnPool (compressionType: CompressionType, batch: Buffer, clusterBytes: number): Promise<Uint8Array[]> {
  const { lengths, output } = await compressPool.compressOwned(compressionType, batch, clusterBytes, { keepOutput: true })
  const streams: Uint8Array[] = []
  let at = 0
  for (const length of lengths) {
    streams.push(output.subarray(at, at + length))
    at += length
  }
  return streams
}
