import { availableParallelism } from 'node:os'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { CompressionType } from './decompress.js'

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
 * Threads start on first use and stop after a while idle. A thread holds the process open only
 * while it has work (an idle one is unref'd), and one that dies fails its requests and is
 * replaced on the next.
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

interface Pending {
  resolve: (output: Buffer) => void
  reject: (err: Error) => void
}

interface Thread {
  worker: Worker
  pending: Map<number, Pending>
  dead: boolean
}

/** decompress-worker.ts beside this file, or decompress-worker.js once compiled. */
const WORKER_URL = new URL(`./decompress-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url)
const IDLE_STOP_MS = 10_000 // threads stop after 10 s without work

export class DecompressPool {
  private threads: Thread[] = []
  private nextId = 0
  private idleTimer: NodeJS.Timeout | undefined

  constructor (readonly size: number) {}

  private start (): Thread {
    const thread: Thread = { worker: new Worker(WORKER_URL), pending: new Map(), dead: false }
    thread.worker.unref()
    const fail = (err: Error): void => {
      thread.dead = true
      for (const pending of thread.pending.values()) pending.reject(err)
      thread.pending.clear()
      this.settled(thread)
    }
    thread.worker.on('message', (reply: DecompressReply) => {
      const pending = thread.pending.get(reply.id)
      if (pending === undefined) return
      thread.pending.delete(reply.id)
      this.settled(thread)
      if ('error' in reply) pending.reject(new ClusterDecodeError(reply.index, reply.error))
      else pending.resolve(Buffer.from(reply.output.buffer, reply.output.byteOffset, reply.output.byteLength))
    })
    thread.worker.on('error', fail)
    thread.worker.on('exit', (code) => { fail(new Error(`decompression worker exited with code ${code}`)) })
    return thread
  }

  /** A request ended on `thread`: let go of the process when it has none left, arm the idle stop when no thread has. */
  private settled (thread: Thread): void {
    if (thread.pending.size > 0) return
    thread.worker.unref()
    if (this.threads.some((t) => t.pending.size > 0)) return
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => { void this.close() }, IDLE_STOP_MS)
    this.idleTimer.unref()
  }

  /**
   * Decodes clusters (each exactly `clusterBytes` bytes) on the least busy thread; resolves with
   * them one after the other, or rejects with a ClusterDecodeError naming the first that fails.
   */
  async decompress (compressionType: CompressionType, inputs: Uint8Array[], clusterBytes: number): Promise<Buffer> {
    clearTimeout(this.idleTimer)
    this.threads = this.threads.filter((t) => !t.dead)
    while (this.threads.length < this.size) this.threads.push(this.start())
    let thread = this.threads[0] as Thread
    for (const candidate of this.threads) if (candidate.pending.size < thread.pending.size) thread = candidate

    const lengths = inputs.map((input) => input.length)
    const input = new Uint8Array(lengths.reduce((sum, length) => sum + length, 0))
    let at = 0
    for (const part of inputs) {
      input.set(part, at)
      at += part.length
    }
    const id = this.nextId++
    const request: DecompressRequest = { id, compressionType, input, lengths, clusterBytes }
    return await new Promise<Buffer>((resolve, reject) => {
      thread.pending.set(id, { resolve, reject })
      thread.worker.ref() // an install waiting on this thread must keep the process alive
      thread.worker.postMessage(request, [input.buffer])
    })
  }

  /** Stops the threads (requests under way fail); the next request starts new ones. */
  async close (): Promise<void> {
    clearTimeout(this.idleTimer)
    const threads = this.threads
    this.threads = []
    await Promise.all(threads.map(async (thread) => await thread.worker.terminate()))
  }
}

/** The process's pool: two threads at most, both cores of a small rescue system. */
export const decompressPool = new DecompressPool(Math.min(2, availableParallelism()))
