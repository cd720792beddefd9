import { availableParallelism } from 'node:os'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CompressionType } from './decompress.js'
import { WorkerPool } from './worker-pool.js'

/**
 * Compressed clusters decoded on worker threads, both codecs, so that both cores of a small rescue
 * system decode while the main thread schedules the writes. Measured on 2 cores (Node 20):
 * - zstd: the pure-JS decoder (fzstd) runs 160..230 MiB/s per thread on 64 KiB clusters;
 * - deflate: zlib's async API (one call per cluster on the libuv pool) reached 630 MiB/s on 64 KiB
 *   clusters but fell to 146 MiB/s on 4 KiB and 15 MiB/s on 512 B ones, where the per-call cost
 *   dominates; synchronous inflate runs 525, 225 and 138 MiB/s per thread on the same clusters.
 * So each request carries many clusters (one message per thread per batch): their compressed bytes
 * copied into one buffer of its own (a view into a 16 MiB slab would be cloned whole), the decoded
 * clusters coming back in one transferred buffer.
 *
 * The threads are a WorkerPool's: started on first use, stopped after a while idle, holding the
 * process open only while they have work, replaced when one dies.
 */

export interface DecompressRequest {
  id: number
  compressionType: CompressionType
  /** The clusters' compressed bytes, one after the other. */
  input: Uint8Array
  lengths: number[]
  clusterBytes: number
}

export type DecompressReply =
  | { id: number; output: Uint8Array }
  /** Cluster `index` of the request does not decode. */
  | { id: number; index: number; error: string }

/** A cluster that does not decode: `index` in the request's list. */
export class ClusterDecodeError extends Error {
  constructor (readonly index: number, message: string) {
    super(message)
    this.name = 'ClusterDecodeError'
  }
}

/** decompress-worker.ts beside this file, or decompress-worker.js once compiled. */
const WORKER_URL = new URL(`./decompress-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url)

export class DecompressPool {
  private readonly pool: WorkerPool<DecompressRequest, DecompressReply, Buffer>

  constructor (readonly size: number) {
    this.pool = new WorkerPool<DecompressRequest, DecompressReply, Buffer>(size, WORKER_URL, 'decompression', (reply) => 'error' in reply
      ? new ClusterDecodeError(reply.index, reply.error)
      : Buffer.from(reply.output.buffer, reply.output.byteOffset, reply.output.byteLength))
  }

  /**
   * Decodes clusters (each exactly `clusterBytes` bytes) on the least busy thread; resolves with
   * them one after the other, or rejects with a ClusterDecodeError naming the first that fails.
   */
  async decompress (compressionType: CompressionType, inputs: Uint8Array[], clusterBytes: number): Promise<Buffer> {
    const lengths = inputs.map((input) => input.length)
    const input = new Uint8Array(lengths.reduce((sum, length) => sum + length, 0))
    let at = 0
    for (const part of inputs) {
      input.set(part, at)
      at += part.length
    }
    const request = (id: number): DecompressRequest => ({ id, compressionType, input, lengths, clusterBytes })
    return await this.pool.run(request, [input.buffer])
  }

  /** Stops the threads (requests under way fail); the next request starts new ones. */
  async close (): Promise<void> {
    await this.pool.close()
  }
}

/** The process's pool: two threads at most, both cores of a small rescue system. */
export const decompressPool = new DecompressPool(Math.min(2, availableParallelism()))
