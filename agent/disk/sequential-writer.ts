import { BackgroundSync } from './background-sync.js'
import type { Disk } from './disk.js'
import { SpanHasher, type RunningDigest } from '../download/running-digest.js'
import type { InstallError } from '../errors/install-error.js'

/**
 * The first MiB of the image: held in memory and written last, only once everything else is on the
 * disk and verified. It holds the MBR, the primary GPT and the boot code, so a disk whose first MiB
 * is not (yet) the image's cannot boot the half-written or unverified rest.
 */
export const HEAD_BYTES = 1024 * 1024 // 1 MiB

export interface SequentialWriterOptions {
  /** Bytes gathered before one positional write; default 4 MiB. */
  slabBytes?: number
  /** Writes allowed in flight at once (they overlap with the download and the digest). */
  maxInFlight?: number
  /** The image is at most this size (the disk's, usually); going past it throws `tooBig(bytes)`. */
  limitBytes: number
  tooBig: (bytes: number) => InstallError
  /** Maps an I/O failure to the step's result message. */
  writeFailed: (cause: unknown) => InstallError
  /**
   * Called once the head is complete (or at finish, for an image under a MiB), before any byte
   * reaches the disk: the place to refuse an image by what its first MiB says. Again after a rewind.
   */
  onHead?: (head: Buffer) => void | Promise<void>
}

/**
 * Writes a byte stream to the disk from offset 0 in large positional writes, overlapping them with
 * whatever produces the bytes. Bytes below HEAD_BYTES are kept back in `head` and never written here.
 * The head and the slabs are shared memory: given a digest (`hashWith`), the writer hands it the
 * head once full and each slab as it goes to the disk, and reuses a slab only once both its write
 * and its hashing are done; the digest's thread reads the bytes where they lie, with no copy.
 */
function sharedBuffer (bytes: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(bytes))
}

export class SequentialWriter {
  readonly head: Buffer
  private headBytes = 0
  private position = 0
  private slab: Buffer
  private slabUsed = 0
  /** Bytes past the head already handed to the disk. */
  private flushedBytes = 0
  private readonly free: Buffer[] = []
  private readonly inFlight = new Set<Promise<void>>()
  private failure: InstallError | undefined
  private touched = false
  private readonly slabBytes: number
  private readonly maxInFlight: number
  private readonly backgroundSync: BackgroundSync
  private readonly hasher = new SpanHasher()

  constructor (private readonly disk: Disk, private readonly options: SequentialWriterOptions) {
    this.slabBytes = options.slabBytes ?? 2 * 1024 * 1024 // 2 MiB
    this.maxInFlight = options.maxInFlight ?? 4
    this.head = sharedBuffer(Math.min(HEAD_BYTES, options.limitBytes))
    this.slab = sharedBuffer(this.slabBytes)
    this.backgroundSync = new BackgroundSync(disk)
  }

  /**
   * From now on the bytes written go to `digest` too (undefined: none), in order, but for the
   * stream's first `alreadyHashedBytes`, hashed elsewhere (what a memory download held before
   * switching to the disk).
   */
  hashWith (digest: RunningDigest | undefined, alreadyHashedBytes = 0): void {
    this.hasher.use(digest, alreadyHashedBytes)
  }

  /** Hands the digest what it has not been given yet (the head or the last slab, not yet written), and waits until all is hashed. */
  async flushHash (): Promise<void> {
    void this.hasher.hash(this.head, 0, this.headBytes)
    const slabStart = this.head.length + this.flushedBytes
    if (this.headBytes === this.head.length) void this.hasher.hash(this.slab, slabStart, slabStart + this.slabUsed)
    await this.hasher.settled()
  }

  /** Bytes accepted so far. */
  get bytes (): number {
    return this.position
  }

  /** True once any byte has been sent to the disk: from then on a failure must leave it unbootable. */
  get wroteToDisk (): boolean {
    return this.touched
  }

  async write (chunk: Uint8Array): Promise<void> {
    if (this.failure !== undefined) throw this.failure
    if (this.position + chunk.length > this.options.limitBytes) throw this.options.tooBig(this.position + chunk.length)
    let from = 0
    if (this.headBytes < this.head.length) {
      const n = Math.min(this.head.length - this.headBytes, chunk.length)
      this.head.set(chunk.subarray(0, n), this.headBytes)
      this.headBytes += n
      from = n
      if (this.headBytes === this.head.length) {
        void this.hasher.hash(this.head, 0, this.head.length)
        await this.options.onHead?.(this.head)
      }
    }
    while (from < chunk.length) {
      const n = Math.min(this.slab.length - this.slabUsed, chunk.length - from)
      this.slab.set(chunk.subarray(from, from + n), this.slabUsed)
      this.slabUsed += n
      from += n
      if (this.slabUsed === this.slab.length) await this.flushSlab()
    }
    this.position += chunk.length
  }

  private async flushSlab (): Promise<void> {
    if (this.slabUsed === 0) return
    const slab = this.slab
    const length = this.slabUsed
    // The slab's disk offset: everything accepted before it, past the head.
    const offset = this.head.length + this.flushedBytes
    const hashed = this.hasher.hash(slab, offset, offset + length)
    this.flushedBytes += length
    this.touched = true
    const write = this.disk.write(slab.subarray(0, length), offset).then(
      async () => {
        this.backgroundSync.wrote(length)
        await hashed.catch(() => {}) // never reuse a slab the digest may still read
        this.free.push(slab)
      },
      (err: unknown) => { this.failure ??= this.options.writeFailed(err) },
    )
    const tracked: Promise<void> = write.finally(() => { this.inFlight.delete(tracked) })
    this.inFlight.add(tracked)
    this.slab = this.free.pop() ?? sharedBuffer(this.slabBytes)
    this.slabUsed = 0
    while (this.inFlight.size >= this.maxInFlight) await Promise.race(this.inFlight)
    if (this.failure !== undefined) throw this.failure
  }

  private async drain (): Promise<void> {
    await Promise.all(this.inFlight)
    if (this.failure !== undefined) throw this.failure
    try {
      await this.backgroundSync.settle()
    } catch (err) {
      throw this.options.writeFailed(err)
    }
  }

  /** Everything so far is void: the next byte is byte 0 again. Bytes already on the disk get overwritten. */
  async rewind (): Promise<void> {
    await Promise.allSettled(this.inFlight)
    this.failure = undefined
    this.position = 0
    this.headBytes = 0
    this.head.fill(0)
    this.slabUsed = 0
    this.flushedBytes = 0
    this.hasher.use(undefined)
  }

  /** Writes what is left (but the head), waits for every write and syncs. Returns the head's filled part. */
  async finish (): Promise<Buffer> {
    if (this.headBytes < this.head.length) await this.options.onHead?.(this.head.subarray(0, this.headBytes))
    await this.flushSlab()
    await this.drain()
    if (this.touched) {
      try {
        await this.disk.sync()
      } catch (err) {
        throw this.options.writeFailed(err)
      }
    }
    return this.head.subarray(0, this.headBytes)
  }

  /** Waits for writes under way (after a failure elsewhere), ignoring their errors. */
  async settle (): Promise<void> {
    await Promise.allSettled(this.inFlight)
    await this.backgroundSync.settle().catch(() => {})
  }
}
