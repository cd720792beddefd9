/**
 * A qcow2 written to its guest offsets as the file streams by, read once from start to end, in
 * memory bounded by the map and what the layout forces us to keep, never by the image's size.
 *
 * Each piece of the file is met in order: the bytes of the tables fetched first (Range requests)
 * must be equal to those met in the stream, else the file changed; the tables the map still wants
 * are taken; every data cluster the map knows goes to its guest offset (the head, the guest's first
 * MiB, lands in the target's memory: the target owns that); compressed clusters are gathered, then
 * decoded on the worker pool in batches. Bytes the map cannot place yet (it is not whole: an L2
 * table not met, an L1 table after its tables) are kept, up to `holdLimitBytes`, until it can; once
 * whole, nothing is kept. The guest bytes backed by no data are the caller's to make zero
 * (zeroUnbacked), once the stream is over.
 */
import { InFlight } from '../../disk/in-flight.js'
import { errors } from '../../errors/install-error.js'
import { TimeSlice } from '../../time-slice.js'
import type { SparseSource } from '../sparse-source.js'
import { HeldBytes } from './held-bytes.js'
import { HOST_EXTENT_BYTES, HostQueue, type HostExtent } from './host-queue.js'
import type { Qcow2Header } from './header.js'
import type { Qcow2Image } from './open-qcow2.js'
import { Qcow2StreamMap, type ByteRange } from './stream-map.js'
import { decodeClusters, type Qcow2WriteTarget } from './write-qcow2.js'

export interface Qcow2StreamOptions {
  /** The file's size: the map checks every offset against it. */
  fileBytes: number
  /** The header, L1 and L2 tables fetched before the stream: the map is whole at once. */
  fetched?: SparseSource
  /** Bytes the stream may keep while the map is not whole; more is QCOW2_TOO_BIG. */
  holdLimitBytes: number
  /** Memory the map's extents still to come may take (32 bytes each); more is QCOW2_TOO_BIG. Default max(holdLimitBytes, 64 MiB). */
  mapLimitBytes?: number
  signal?: AbortSignal
  /** The header passed its checks (before any write): the caller's own checks (the virtual size against the disk). */
  onHeader?: (header: Qcow2Header) => void
  /** The stream's bytes differ from those of the tables fetched first: the error to throw. */
  changed?: (reason: string) => Error
}

/** A file piece the caller lets go of once every write from it has landed. */
export interface StreamPiece {
  data: Buffer
  offset: number
  release: () => void
}

const MAX_IN_FLIGHT = 4 // writes and batches under way at once
const COMPRESSED_BATCH_BYTES = 4 * 1024 * 1024 // 4 MiB of guest clusters decoded, then written
/**
 * The map's extents and the compressed clusters under way are memory too: however small the
 * budget, they may take this much (a 64 MiB map is 2 Mi extents: a 128 GiB guest of 64 KiB
 * clusters, none contiguous with the next on the host).
 */
const MIN_MAP_BYTES = 64 * 1024 * 1024
/** Compressed clusters under way (the batches being decoded, 4 MiB of guest each, and those gathering) may always take this much. */
const MIN_GATHER_BYTES = 32 * 1024 * 1024
/** The unit of a compressed cluster's length in its L2 entry. */
const SECTOR_BYTES = 512

/** A compressed cluster whose bytes span pieces of the stream. */
interface Gathering {
  extent: HostExtent
  input: Buffer
  filled: number
}

export class Qcow2StreamWriter {
  private map: Qcow2StreamMap
  private readonly slice: TimeSlice
  private readonly queue = new HostQueue()
  private readonly held = new HeldBytes()
  private gathering: Gathering[] = []
  private batch: Array<{ guestOffset: number; length: number; input: Buffer }> = []
  private batchBytes = 0
  private writes = new InFlight(MAX_IN_FLIGHT)
  /** File bytes taken. */
  private position = 0
  /** The most bytes kept at once (for the result's notes). */
  private heldPeak = 0
  private written = 0
  /** Bytes of compressed clusters gathered and not decoded yet. */
  private gatheredBytes = 0
  /** Extents the queue may hold: its memory (32 bytes each) within the map's limit. */
  private readonly maxQueued: number

  constructor (private readonly target: Qcow2WriteTarget, private readonly options: Qcow2StreamOptions) {
    this.slice = new TimeSlice(options.signal)
    this.maxQueued = Math.floor((options.mapLimitBytes ?? Math.max(options.holdLimitBytes, MIN_MAP_BYTES)) / HOST_EXTENT_BYTES)
    this.map = new Qcow2StreamMap(options.fileBytes, this.slice, options.fetched, options.onHeader)
  }

  /** Guest bytes written so far (data and decoded clusters, the head's included). */
  get guestBytesWritten (): number {
    return this.written
  }

  /** The most bytes the layout made the stream keep at once. */
  get heldPeakBytes (): number {
    return this.heldPeak
  }

  /** The map's tables (the L2 tables zeroUnbacked walks). */
  get tables (): SparseSource {
    return this.map.tables
  }

  /** Before the first piece: the tables fetched first are checked (all of them: the map is then whole). */
  async start (): Promise<void> {
    await this.advanceMap(0)
  }

  /** The next piece of the file, in order. */
  async take (piece: StreamPiece): Promise<void> {
    const { data, offset } = piece
    if (offset !== this.position) throw new RangeError(`a piece at ${offset} where ${this.position} was expected`)
    const end = offset + data.length
    if (end > this.options.fileBytes) throw errors.qcow2Damaged(`the file is longer than its announced ${this.options.fileBytes} bytes`)
    const differs = this.map.tables.compare(offset, data)
    if (differs !== undefined) throw this.changed(`its byte ${differs} is not the one read first`)
    let pending = 1
    const landed = (): void => { if (--pending === 0) piece.release() }
    try {
      const covered: ByteRange[] = []
      await this.takeTables(piece, covered)
      await this.gather(piece, covered)
      while (this.queue.peekHost() < end) {
        await this.slice.next()
        const extent = this.queue.pop() as HostExtent
        if (extent.compressedBytes > 0) {
          const gathering = this.startGathering(extent)
          if (this.copyInto(gathering, piece, covered)) await this.addToBatch(gathering)
          else this.gathering.push(gathering)
        } else {
          const to = Math.min(extent.hostOffset + extent.length, end)
          covered.push({ offset: extent.hostOffset, length: to - extent.hostOffset })
          pending++
          await this.write(data.subarray(extent.hostOffset - offset, to - offset), extent.guestOffset, landed)
          if (to < extent.hostOffset + extent.length) this.queue.push(rest(extent, to))
        }
      }
      await this.flushBatch(false)
      if (this.map.image === undefined) this.hold(piece, covered)
      else this.held.clear()
    } finally {
      this.position = end
      landed()
    }
  }

  /** The stream is over: every write landed, every cluster placed; the checked image. */
  async end (): Promise<Qcow2Image> {
    if (this.position !== this.options.fileBytes) {
      throw errors.qcow2Damaged(`the file ends at ${this.position} of its announced ${this.options.fileBytes} bytes`)
    }
    const image = this.map.image
    // Never for a file that passed the checks: every table and cluster lies inside it.
    if (image === undefined || this.queue.size > 0 || this.gathering.length > 0) throw errors.qcow2Damaged('the file ends before its tables and clusters')
    await this.flushBatch(true)
    await this.writes.drain()
    this.held.clear()
    return image
  }

  /** The stream starts again from byte 0 (the server could not resume): everything met is void. */
  async rewind (): Promise<void> {
    await this.writes.settle()
    this.writes = new InFlight(MAX_IN_FLIGHT)
    this.map = new Qcow2StreamMap(this.options.fileBytes, this.slice, this.options.fetched, this.options.onHeader)
    this.queue.clear()
    this.held.clear()
    this.gathering = []
    this.batch = []
    this.batchBytes = 0
    this.gatheredBytes = 0
    this.written = 0
    this.position = 0
    await this.start()
  }

  /** After a failure: the writes under way end (their errors ignored). */
  async settle (): Promise<void> {
    await this.writes.settle()
  }

  /** The tables the map wants from this piece and from what was kept; the extents their checks give. */
  private async takeTables (piece: StreamPiece, covered: ByteRange[]): Promise<void> {
    const end = piece.offset + piece.data.length
    for (;;) {
      let took = false
      for (const range of this.map.wanted()) {
        if (range.offset >= end) break
        // Passed already: it must have been kept (it was not placed as data).
        const passed = Math.min(range.offset + range.length, piece.offset) - range.offset
        if (passed > 0) {
          const kept = this.held.read(range.offset, passed)
          if (kept === undefined) throw errors.qcow2Damaged(`the table at ${range.offset} overlaps guest data`)
          this.map.tables.add(range.offset, kept)
          took = true
        }
        const from = Math.max(range.offset, piece.offset)
        const to = Math.min(range.offset + range.length, end)
        if (from < to) {
          this.map.tables.add(from, piece.data.subarray(from - piece.offset, to - piece.offset))
          covered.push({ offset: from, length: to - from })
          took = true
        }
      }
      if (!took) return
      await this.advanceMap(piece.offset)
    }
  }

  /** New extents from the map: those wholly ahead to the queue, those the stream passed from what was kept. */
  private async advanceMap (position: number): Promise<void> {
    await this.map.advance(async (extent) => { await this.place(extent, position) })
  }

  /** An extent the map gave: ahead of `position`, queued; passed, written (or gathered) from what was kept. */
  private async place (extent: HostExtent, position: number): Promise<void> {
    await this.slice.next()
    if (extent.hostOffset >= position) {
      if (this.queue.size >= this.maxQueued) {
        throw errors.qcow2TooBig(new Error(`the qcow2's map holds more than ${this.maxQueued} extents still to come`))
      }
      this.queue.push(extent)
      return
    }
    const bytes = extent.compressedBytes > 0 ? extent.compressedBytes : extent.length
    const passed = Math.min(bytes, position - extent.hostOffset)
    const kept = this.held.read(extent.hostOffset, passed)
    if (kept === undefined) throw errors.qcow2Damaged(`the data for guest offset ${extent.guestOffset} lies where the stream placed other data`)
    if (extent.compressedBytes > 0) {
      const gathering = this.startGathering(extent)
      kept.copy(gathering.input)
      gathering.filled = passed
      if (passed === bytes) await this.addToBatch(gathering)
      else this.gathering.push(gathering)
      return
    }
    await this.write(kept, extent.guestOffset, () => {})
    if (passed < bytes) this.queue.push(rest(extent, position))
  }

  /**
   * A compressed cluster's bytes to gather (a copy: they may span pieces). Gathered and batched
   * bytes count against the limit with those kept: a table naming one host range many times
   * cannot make the stream hold more.
   */
  private startGathering (extent: HostExtent): Gathering {
    if (this.held.bytes + this.gatheredBytes + extent.compressedBytes > this.options.holdLimitBytes + MIN_GATHER_BYTES) {
      throw errors.qcow2TooBig(new Error(`compressed clusters under way would take more than ${this.options.holdLimitBytes} bytes`))
    }
    this.gatheredBytes += extent.compressedBytes
    return { extent, input: Buffer.allocUnsafe(extent.compressedBytes), filled: 0 }
  }

  /** Compressed clusters begun in earlier pieces: this piece's part of their bytes. */
  private async gather (piece: StreamPiece, covered: ByteRange[]): Promise<void> {
    const still: Gathering[] = []
    for (const gathering of this.gathering) {
      if (!this.copyInto(gathering, piece, covered)) still.push(gathering)
      else await this.addToBatch(gathering)
    }
    this.gathering = still
  }

  /** Copies the piece's part of a compressed cluster's bytes; true once they are all there. */
  private copyInto (gathering: Gathering, piece: StreamPiece, covered: ByteRange[]): boolean {
    const { extent } = gathering
    const from = extent.hostOffset + gathering.filled
    const to = Math.min(extent.hostOffset + extent.compressedBytes, piece.offset + piece.data.length)
    if (from < to) {
      piece.data.copy(gathering.input, gathering.filled, from - piece.offset, to - piece.offset)
      gathering.filled += to - from
      // The last 512-byte sector counted for a compressed cluster may hold the start of the next one
      // (qemu packs them), whose table may come later: it is not this cluster's alone.
      const own = Math.min(to, extent.hostOffset + extent.compressedBytes - SECTOR_BYTES)
      if (from < own) covered.push({ offset: from, length: own - from })
    }
    return gathering.filled === extent.compressedBytes
  }

  private async addToBatch (gathering: Gathering): Promise<void> {
    const { extent } = gathering
    this.batch.push({ guestOffset: extent.guestOffset, length: extent.length, input: gathering.input })
    this.batchBytes += extent.length
    if (this.batchBytes >= COMPRESSED_BATCH_BYTES) await this.flushBatch(true)
  }

  /** The clusters gathered, decoded on the pool and written; `all`: even a batch not full yet. */
  private async flushBatch (all: boolean): Promise<void> {
    if (this.batch.length === 0 || (!all && this.batchBytes < COMPRESSED_BATCH_BYTES)) return
    const batch = this.batch
    this.batch = []
    this.batchBytes = 0
    const inputBytes = batch.reduce((sum, cluster) => sum + cluster.input.length, 0)
    const image = this.map.parsedHeader as Qcow2Header
    await this.writes.add(async () => {
      const decoded = await decodeClusters(image, batch)
      this.gatheredBytes -= inputBytes
      // Whole clusters whose guest offsets follow each other go in one write.
      let first = 0
      for (let i = 0; i < batch.length; i++) {
        const cluster = batch[i] as { guestOffset: number; length: number }
        const next = batch[i + 1]
        if (next !== undefined && cluster.length === image.clusterBytes && next.guestOffset === cluster.guestOffset + image.clusterBytes) continue
        const start = (batch[first] as { guestOffset: number }).guestOffset
        const from = first * image.clusterBytes
        await this.targetWrite(decoded.subarray(from, from + cluster.guestOffset + cluster.length - start), start)
        first = i + 1
      }
    })
  }

  /** Guest data to its place; `landed` once it is written (the piece may then be let go of). */
  private async write (data: Buffer, guestOffset: number, landed: () => void): Promise<void> {
    await this.writes.add(async () => {
      try {
        await this.targetWrite(data, guestOffset)
      } finally {
        landed()
      }
    })
  }

  private async targetWrite (data: Buffer, offset: number): Promise<void> {
    try {
      await this.target.write(data, offset)
    } catch (err) {
      throw errors.qcow2WriteFailed(err)
    }
    this.written += data.length
  }

  /** The bytes of this piece no table or cluster took, kept while the map is not whole. */
  private hold (piece: StreamPiece, covered: ByteRange[]): void {
    covered.sort((a, b) => a.offset - b.offset)
    let at = piece.offset
    const end = piece.offset + piece.data.length
    const keep = (to: number): void => {
      if (to <= at) return
      if (this.held.bytes + (to - at) > this.options.holdLimitBytes) {
        throw errors.qcow2TooBig(new Error(`the stream passed more than ${this.options.holdLimitBytes} bytes before the tables that place them`))
      }
      this.held.add(at, piece.data.subarray(at - piece.offset, to - piece.offset))
      this.heldPeak = Math.max(this.heldPeak, this.held.bytes)
    }
    for (const range of covered) {
      keep(Math.min(range.offset, end))
      at = Math.max(at, range.offset + range.length)
    }
    keep(end)
  }

  private changed (reason: string): Error {
    return this.options.changed?.(reason) ?? errors.qcow2Damaged(`the file changed: ${reason}`)
  }
}

/** What is left of a data extent from host offset `from`. */
function rest (extent: HostExtent, from: number): HostExtent {
  const done = from - extent.hostOffset
  return { hostOffset: from, guestOffset: extent.guestOffset + done, length: extent.length - done, compressedBytes: 0 }
}


