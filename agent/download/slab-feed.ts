/**
 * The download's one copy of each byte: the network's chunks are copied into large slabs of shared
 * memory; each filled slab is handed to the run's digest, which hashes it where it lies on a worker
 * thread, and then to the sink, which keeps it (an image held in memory) or writes it to the disk
 * and lets it go. The sink never sees the digest; the digest never waits for the sink.
 */
import { WorkerDigest, type DigestType, type RunningDigest } from './running-digest.js'

/** Bytes of the file in one shared slab, in order. The sink must not change them. */
export interface Slab {
  /** The filled part of the slab (shared memory). */
  readonly data: Buffer
  /** Position of `data[0]` in the file. */
  readonly offset: number
  /**
   * The sink is done with the bytes (written, or dropped): the slab may hold later bytes once the
   * digest has read it. A slab kept (an image in memory) is simply never released.
   */
  release (): void
}

/** Where the download's bytes go. Every method may throw: the download then ends with that error, unchanged. */
export interface DownloadSink {
  /**
   * The size the server announced for the whole file (Content-Length of a 200, or the total of a
   * Content-Range), or undefined, and the answer's strong validator (If-Range value: a strong ETag
   * or Last-Modified), if any, for ranges of the same version; once, before any byte. Not called
   * again after a rewind.
   */
  begin (sizeBytes: number | undefined, validator?: string): void | Promise<void>
  /** Bytes of the next slab: asked when a byte arrives that the last one cannot hold. */
  slabBytes (): number
  /** The next slab of the file, in order, each byte exactly once since the last rewind (awaited: backpressure). */
  take (slab: Slab): Promise<void>
  /** The server could not resume: every slab given so far is void, the next one starts at byte 0 again. */
  rewind (): void | Promise<void>
}

/** Slabs from the pool are at least this long; a sink asking for less gets a slab of its own. */
const POOLED_MIN_BYTES = 64 * 1024
/**
 * Bytes handed to the digest and not hashed yet, past which the feed waits for it (at least
 * MIN_UNHASHED_SLABS slabs may wait, whatever their size). Without it a download faster than the
 * hash (4 connections on loopback: sha512 runs at 500–600 MiB/s here) allocated a new slab for
 * every one the digest had not released: 67 MiB of slabs on one connection, more on four.
 */
const MAX_UNHASHED_BYTES = 8 * 1024 * 1024
const MIN_UNHASHED_SLABS = 2

export class SlabFeed {
  private slab: Buffer | undefined
  private used = 0
  /** File position of the current slab's first byte. */
  private start = 0
  private digest: RunningDigest | undefined
  /** Released slabs, hashed, free to hold later bytes. */
  private readonly free: Buffer[] = []
  /** Slabs handed to the digest, not hashed yet, oldest first, with their lengths. */
  private readonly unhashed: Array<{ hashed: Promise<void>; length: number }> = []
  private unhashedBytes = 0

  constructor (private readonly sink: DownloadSink, private readonly digestType: DigestType | undefined) {
    this.digest = digestType === undefined ? undefined : new WorkerDigest(digestType)
  }

  /** Copies `chunk` in; each slab that fills goes to the digest, then to the sink. */
  async write (chunk: Buffer): Promise<void> {
    let from = 0
    while (from < chunk.length) {
      const slab = this.slab ?? this.nextSlab()
      const n = Math.min(slab.length - this.used, chunk.length - from)
      chunk.copy(slab, this.used, from, from + n)
      this.used += n
      from += n
      if (this.used === slab.length) await this.handOver()
    }
  }

  /** The end of the file: the partly filled slab goes too, and the digest is read. */
  async end (): Promise<string | undefined> {
    if (this.used > 0) await this.handOver()
    const digest = this.digest
    this.digest = undefined
    return await digest?.digestHex()
  }

  /** Everything so far is void: a new digest, the next byte is byte 0 again. */
  async rewind (): Promise<void> {
    this.digest?.dispose()
    this.digest = this.digestType === undefined ? undefined : new WorkerDigest(this.digestType)
    this.slab = undefined
    this.used = 0
    this.start = 0
    this.unhashed.length = 0
    this.unhashedBytes = 0
    await this.sink.rewind()
  }

  /** The digest's worker let go of (after a failure; a no-op once read). */
  dispose (): void {
    this.digest?.dispose()
    this.digest = undefined
  }

  private nextSlab (): Buffer {
    const bytes = this.sink.slabBytes()
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`a slab of ${bytes} bytes`)
    const index = this.free.findIndex((slab) => slab.length === bytes)
    const slab = index >= 0 ? this.free.splice(index, 1)[0] as Buffer : Buffer.from(new SharedArrayBuffer(bytes))
    this.slab = slab
    this.used = 0
    return slab
  }

  /** Counts `hashed` among the slabs waiting for the digest; waits while too many bytes do. */
  private async waitForDigest (hashed: Promise<void>, length: number): Promise<void> {
    if (this.digest === undefined) return
    this.unhashed.push({ hashed, length })
    this.unhashedBytes += length
    while (this.unhashed.length > MIN_UNHASHED_SLABS && this.unhashedBytes > MAX_UNHASHED_BYTES) {
      const oldest = this.unhashed.shift() as { hashed: Promise<void>; length: number }
      this.unhashedBytes -= oldest.length
      await oldest.hashed.catch(() => {})
    }
  }

  private async handOver (): Promise<void> {
    const slab = this.slab as Buffer
    const length = this.used
    const offset = this.start
    this.slab = undefined
    this.used = 0
    this.start += length
    const hashed = this.digest?.updateShared({ buffer: slab.buffer as SharedArrayBuffer, offset: slab.byteOffset, length, last: true }) ?? Promise.resolve()
    // A failed digest fails end(); the slab is reused only once the digest is done with it.
    hashed.catch(() => {})
    await this.waitForDigest(hashed, length)
    const pool = this.free
    let released = false
    await this.sink.take({
      data: slab.subarray(0, length),
      offset,
      release: () => {
        if (released || slab.length < POOLED_MIN_BYTES) return
        released = true
        void hashed.then(() => { pool.push(slab) }, () => {})
      },
    })
  }
}
