import { HEAD_BYTES } from '../../disk/boot-area.js'
import { InFlight } from '../../disk/in-flight.js'
import { SLAB_BYTES, type ByteSource } from '../memory-image.js'
import { errors } from '../../errors/install-error.js'
import { TimeSlice } from '../../time-slice.js'
import type { Qcow2Image } from './open-qcow2.js'
import { guestExtents, type GuestExtent } from './tables.js'
import { ClusterDecodeError, decompressPool } from './decompress-pool.js'
import { ASYNC_INFLATE_MIN_CLUSTER_BYTES, inflateClusters } from './inflate-async.js'

/**
 * The guest disk of a checked qcow2 image, onto a disk, as `qemu-img convert -O raw` would write it.
 *
 * The guest's first MiB never reaches the target here: it holds the MBR, the primary GPT and the
 * boot code, so it is assembled in memory and handed back for the caller to write last, once
 * everything else is on the disk (as for raw images). A disk left half
 * written by a failure or an abort therefore keeps its old first MiB, or whatever the caller made
 * of it, never a new partition table pointing at missing data.
 *
 * Work is cut into jobs run at most MAX_IN_FLIGHT at a time: a data write (host-contiguous runs,
 * straight from the downloaded slabs), a zero check of 4 MiB, or a batch of compressed clusters
 * decoded on the decompression pool's threads and written in one go. Positional writes make their
 * order irrelevant. The walk over the tables hands back control after a bounded number of steps
 * (guestExtents), and every step of the loops here goes through a TimeSlice: the event loop gets a
 * turn at least every TIME_SLICE_MS and an abort is seen at the next step, whatever the image.
 */

/** Where the guest disk goes: a Disk, or anything with its positional I/O. */
export interface Qcow2WriteTarget {
  readonly sizeBytes: number
  write (data: Uint8Array, offset: number): Promise<void>
  read (data: Uint8Array, offset: number): Promise<void>
}

export interface Qcow2WriteOptions {
  signal?: AbortSignal
  /** Guest bytes handled so far (written, found already zero, or kept in the head). */
  onProgress?: (guestBytesDone: number) => void
}

const MAX_DATA_WRITE_BYTES = 8 * 1024 * 1024 // 8 MiB: one positional write of contiguous host data
const ZERO_CHECK_BYTES = 4 * 1024 * 1024 // 4 MiB: read, compare, maybe zero, per step
const COMPRESSED_BATCH_BYTES = 4 * 1024 * 1024 // 4 MiB of guest clusters decoded, then written at once
const MAX_IN_FLIGHT = 4 // jobs (writes, zero checks, batches) under way at once

let zeros: Buffer | undefined
/** A shared, never-written buffer of zeros (allocated on first use). */
function zeroBuffer (): Buffer {
  zeros ??= Buffer.alloc(ZERO_CHECK_BYTES)
  return zeros
}

async function targetIo (io: Promise<void>): Promise<void> {
  try {
    await io
  } catch (err) {
    throw errors.qcow2WriteFailed(err)
  }
}

/**
 * One install of one image: turns guest extents into jobs. The guest's first MiB only ever goes
 * into `head`; the target gets [HEAD_BYTES, limit) and nothing else.
 */
class Qcow2Writer {
  readonly head: Buffer
  /** Guest bytes below this go to the target (when at least HEAD_BYTES). */
  private readonly limit: number
  private readonly inFlight = new InFlight(MAX_IN_FLIGHT)
  private readonly zeroReadBuffers: Buffer[] = []
  private batch: Array<GuestExtent & { kind: 'compressed' }> = []
  private batchBytes = 0
  private done = 0

  constructor (
    private readonly image: Qcow2Image,
    private readonly source: ByteSource,
    private readonly target: Qcow2WriteTarget,
    private readonly options: Qcow2WriteOptions,
    private readonly slice: TimeSlice,
  ) {
    this.head = Buffer.alloc(Math.min(HEAD_BYTES, image.virtualSizeBytes))
    this.limit = Math.min(image.virtualSizeBytes, target.sizeBytes)
  }

  /** The guest range the extents must cover: the head, and what the target receives. */
  get end (): number {
    return Math.max(this.head.length, this.limit)
  }

  private progress (bytes: number): void {
    this.done += bytes
    this.options.onProgress?.(this.done)
  }

  /** The part of [from, to) that goes to the target. */
  private targetPart (from: number, to: number): [number, number] {
    return [Math.max(from, HEAD_BYTES), Math.min(to, this.limit)]
  }

  async add (extent: GuestExtent): Promise<void> {
    if (extent.kind === 'compressed') {
      const last = this.batch[this.batch.length - 1]
      if (last !== undefined && (last.guestOffset + this.image.clusterBytes !== extent.guestOffset || this.batchBytes >= COMPRESSED_BATCH_BYTES)) {
        await this.flushBatch()
      }
      this.batch.push(extent)
      this.batchBytes += this.image.clusterBytes
      return
    }
    await this.flushBatch()
    if (extent.kind === 'data') await this.addData(extent)
    else await this.addZero(extent)
  }

  /** Host data: the head's part copied, the rest written as views of the source, no copy. */
  private async addData (extent: GuestExtent & { kind: 'data' }): Promise<void> {
    const { guestOffset, length, hostOffset } = extent
    const headEnd = Math.min(guestOffset + length, this.head.length)
    if (guestOffset < headEnd) {
      this.sourceView(hostOffset, headEnd - guestOffset).copy(this.head, guestOffset)
      this.progress(headEnd - guestOffset)
    }
    const [from, to] = this.targetPart(guestOffset, guestOffset + length)
    for (let at = from; at < to;) {
      await this.slice.next()
      // Cut at the source's slab boundaries too: a range across two slabs would be copied.
      const offset = at
      const host = hostOffset + (offset - guestOffset)
      const bytes = Math.min(MAX_DATA_WRITE_BYTES, to - offset, SLAB_BYTES - (host % SLAB_BYTES))
      const data = this.sourceView(host, bytes)
      await this.inFlight.add(async () => {
        await targetIo(this.target.write(data, offset))
        this.progress(bytes)
      })
      at += bytes
    }
  }

  /**
   * Zeros (unallocated or zero clusters). The target may hold anything, so these bytes must be
   * made zero; but writing every zero byte of a mostly empty 2 TiB disk would take hours. Each
   * 4 MiB step reads the target first and writes zeros only where it is not already zero: a hole in
   * a file or a device that reads as zeros costs one read and no write, a disk full of old data
   * costs a read on top of the write (about twice the I/O of a blind zero write, for those ranges
   * only). Discard-based zeroing would be faster still, but is not guaranteed to read back as
   * zeros on every device.
   */
  private async addZero (extent: GuestExtent & { kind: 'zero' }): Promise<void> {
    const { guestOffset, length } = extent
    const headEnd = Math.min(guestOffset + length, this.head.length)
    if (guestOffset < headEnd) this.progress(headEnd - guestOffset) // the head starts zeroed
    const [from, to] = this.targetPart(guestOffset, guestOffset + length)
    for (let at = from; at < to; at += ZERO_CHECK_BYTES) {
      await this.slice.next()
      const offset = at
      const bytes = Math.min(ZERO_CHECK_BYTES, to - offset)
      await this.inFlight.add(async () => {
        const buffer = this.zeroReadBuffers.pop() ?? Buffer.allocUnsafeSlow(ZERO_CHECK_BYTES)
        try {
          const current = buffer.subarray(0, bytes)
          await targetIo(this.target.read(current, offset))
          const zero = zeroBuffer().subarray(0, bytes)
          if (!current.equals(zero)) await targetIo(this.target.write(zero, offset))
        } finally {
          this.zeroReadBuffers.push(buffer)
        }
        this.progress(bytes)
      })
    }
  }

  /** Compressed clusters gathered so far: decoded concurrently, then written in one go. */
  async flushBatch (): Promise<void> {
    const batch = this.batch
    if (batch.length === 0) return
    this.batch = []
    this.batchBytes = 0
    const first = batch[0] as GuestExtent & { kind: 'compressed' }
    const start = first.guestOffset
    const guestBytes = batch.reduce((sum, extent) => sum + extent.length, 0)
    await this.inFlight.add(async () => {
      const decoded = await this.decode(batch)
      const end = start + guestBytes
      const headEnd = Math.min(end, this.head.length)
      if (start < headEnd) decoded.copy(this.head, start, 0, headEnd - start)
      const [from, to] = this.targetPart(start, end)
      if (from < to) await targetIo(this.target.write(decoded.subarray(from - start, to - start), from))
      this.progress(guestBytes)
    })
  }

  /** The compressed bytes of a cluster: to the end of the file at most (qemu reads zeros past it). */
  private compressedInput (extent: GuestExtent & { kind: 'compressed' }): Buffer {
    return this.source.view(extent.hostOffset, Math.min(extent.compressedBytes, this.image.fileBytes - extent.hostOffset))
  }

  private async decode (batch: Array<GuestExtent & { kind: 'compressed' }>): Promise<Buffer> {
    return await decodeClusters(this.image, batch.map((extent) => ({ guestOffset: extent.guestOffset, input: this.compressedInput(extent) })))
  }

  private sourceView (hostOffset: number, bytes: number): Buffer {
    const view = this.source.view(hostOffset, bytes)
    // openQcow2 checked this; a different source would be a caller's bug, never a write of garbage.
    if (view.length !== bytes) throw errors.qcow2Damaged(`data at ${hostOffset} lies beyond the end of the file`)
    return view
  }

  async finish (): Promise<void> {
    await this.flushBatch()
    await this.inFlight.drain()
  }

  /** Waits for the jobs under way after a failure (no write may land after writeQcow2 returns). */
  async settle (): Promise<void> {
    await this.inFlight.settle()
  }
}

/**
 * Compressed clusters decoded, laid end to end (`clusterBytes` each): deflate clusters of 64 KiB
 * and more by zlib's asynchronous API (inflate-async: no worker thread's isolate, measured 60–65
 * MiB less peak RSS on a 2 GiB zlib guest, streamed and in memory, for the same time), the others
 * on the decompression pool, the batch cut in one run of clusters per thread. A cluster that does
 * not decode is QCOW2_DAMAGED, naming its guest offset.
 */
export async function decodeClusters (
  image: Pick<Qcow2Image, 'compressionType' | 'clusterBytes'>, clusters: Array<{ guestOffset: number; input: Buffer }>,
): Promise<Buffer> {
  const inputs = clusters.map((cluster) => cluster.input)
  try {
    if (image.compressionType === 'deflate' && image.clusterBytes >= ASYNC_INFLATE_MIN_CLUSTER_BYTES) return await inflateClusters(inputs, image.clusterBytes)
    return await decodeOnPool(image, inputs)
  } catch (err) {
    const failed = clusters[err instanceof ClusterDecodeError ? err.index : 0]
    throw errors.qcow2Damaged(`compressed cluster for guest offset ${failed?.guestOffset ?? 0} does not decompress`, err)
  }
}

/** The clusters cut in one run per thread of the pool; a failure names the cluster's index in `inputs` (the run's first when the thread failed). */
async function decodeOnPool (image: Pick<Qcow2Image, 'compressionType' | 'clusterBytes'>, inputs: Buffer[]): Promise<Buffer> {
  const pool = decompressPool
  const parts = Math.min(pool.size, inputs.length)
  const perPart = Math.ceil(inputs.length / parts)
  const outputs = await Promise.all(Array.from({ length: parts }, async (_, p) => {
    try {
      return await pool.decompress(image.compressionType, inputs.slice(p * perPart, (p + 1) * perPart), image.clusterBytes)
    } catch (err) {
      const index = p * perPart + (err instanceof ClusterDecodeError ? err.index : 0)
      throw new ClusterDecodeError(index, err instanceof Error ? err.message : String(err))
    }
  }))
  return outputs.length === 1 ? outputs[0] as Buffer : Buffer.concat(outputs)
}

/**
 * Writes the guest disk [HEAD_BYTES, virtualSize) to the target, and returns the guest's first
 * min(HEAD_BYTES, virtualSize) bytes (the head, which the caller writes last). Every guest byte not
 * backed by data (unallocated, zero clusters/subclusters) reads back as zero afterwards, whatever
 * the target held. Nothing is written outside [HEAD_BYTES, min(virtualSize, target.sizeBytes)).
 * Throws errors.qcow2WriteFailed(cause) on I/O failure, QCOW2_DAMAGED on a bad compressed cluster,
 * the signal's reason once aborted (after the writes under way have ended). Does not sync.
 */
export async function writeQcow2 (image: Qcow2Image, source: ByteSource, target: Qcow2WriteTarget, options: Qcow2WriteOptions = {}): Promise<Buffer> {
  if (source.sizeBytes !== image.fileBytes) throw new RangeError(`the source has ${source.sizeBytes} bytes, the image was opened from ${image.fileBytes}`)
  return await walkGuest(image, source, target, options, () => true)
}

/**
 * The guest bytes backed by no data (unallocated, zero clusters and subclusters) made zero on the
 * target, [HEAD_BYTES, virtualSize) as writeQcow2 would (read first, written only where not zero
 * already); the data is not touched. `tables` needs the L2 tables only: a streamed install wrote
 * the data as it came. Does not sync.
 */
export async function zeroUnbacked (image: Qcow2Image, tables: ByteSource, target: Qcow2WriteTarget, options: Qcow2WriteOptions = {}): Promise<void> {
  await walkGuest(image, tables, target, options, (extent) => extent.kind === 'zero')
}

/** The guest's extents, in guest order, those `wanted` written by a Qcow2Writer; its head. */
async function walkGuest (
  image: Qcow2Image, source: ByteSource, target: Qcow2WriteTarget, options: Qcow2WriteOptions, wanted: (extent: GuestExtent) => boolean,
): Promise<Buffer> {
  const slice = new TimeSlice(options.signal)
  const writer = new Qcow2Writer(image, source, target, options, slice)
  try {
    options.signal?.throwIfAborted()
    for (const extent of guestExtents(image, source, { start: 0, end: writer.end }, { maxDataBytes: MAX_DATA_WRITE_BYTES })) {
      await slice.next()
      if (wanted(extent)) await writer.add(extent)
    }
    await writer.finish()
    options.signal?.throwIfAborted()
  } catch (err) {
    await writer.settle()
    // Once aborted, whatever failed afterwards (a write on a closing disk) is the abort's doing.
    options.signal?.throwIfAborted()
    throw err
  }
  return writer.head
}
