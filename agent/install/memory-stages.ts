import type { Slab } from '../download/index.js'
import { MemoryBudgetExceeded, MemoryImage } from '../image/memory-image.js'
import { openQcow2, readQcow2Guest, writeQcow2, type Qcow2Image } from '../image/qcow2/index.js'
import { writeRawFromMemory } from '../image/raw.js'
import { detectCompression, MAGIC_BYTES, type StreamCompression } from '../image/stream-decoder.js'
import { errors } from '../errors/install-error.js'
import type { ImageStage, StageContext, StagedImage } from './image-stage.js'
import { checkDeclaredType } from './image-checks.js'
import { Qcow2StreamStage, type RangesOf } from './qcow2-stream-stage.js'
import { RawStreamStage, STREAM_SLAB_BYTES } from './raw-stream-stage.js'

/**
 * A raw image downloaded into memory (the download's slabs kept as they are, within the budget)
 * and written only once verified, so any failure before leaves the disk untouched. Over the
 * budget (announced, or grown past it) it goes on as a RawStreamStage: what memory holds first,
 * then the rest, straight to the disk with the head held back.
 *
 * A compressed raw image is held compressed (a 20 GiB image compressed to 3 GiB fits a 16 GiB
 * server); once its digest matched it is decoded onto the disk by a RawStreamStage (its head held
 * back until its tables are checked), since its tables can only be read decoded.
 */
export class RawMemoryStage implements ImageStage {
  private readonly memory: MemoryImage
  private stream: RawStreamStage | undefined
  /** A compressed image, decoded onto the disk in the verify step. */
  private decoded: RawStreamStage | undefined
  /** The budget is used up: the next slab goes to the disk. */
  private overBudget = false

  constructor (private readonly context: StageContext) {
    this.memory = new MemoryImage(context.memoryLimitBytes)
  }

  get mode (): 'memory' | 'stream' {
    return this.stream === undefined ? 'memory' : 'stream'
  }

  async begin (sizeBytes: number | undefined): Promise<void> {
    if (sizeBytes === undefined) return
    // Refused before any write: the announced size cannot fit.
    this.context.target.checkFits(sizeBytes)
    if (sizeBytes > this.context.memoryLimitBytes) await this.switchToStream('content-length')
  }

  slabBytes (): number {
    if (this.stream !== undefined) return this.stream.slabBytes()
    const bytes = this.memory.nextSlabBytes()
    if (bytes > 0) return bytes
    this.overBudget = true
    return STREAM_SLAB_BYTES
  }

  async take (slab: Slab): Promise<void> {
    if (this.stream === undefined && !this.overBudget) {
      this.context.target.checkFits(this.memory.sizeBytes + slab.data.length)
      this.memory.adopt(slab.data)
      return
    }
    const stream = this.stream ?? await this.switchToStream('grew past budget')
    await stream.take(slab)
  }

  async rewind (): Promise<void> {
    this.memory.clear()
    await this.stream?.rewind()
  }

  async end (): Promise<void> {
    await this.stream?.end()
  }

  async verify (): Promise<StagedImage> {
    if (this.stream !== undefined) return await this.stream.verify()
    const { request, target } = this.context
    const memory = this.memory
    const compression = detectCompression(memory.view(0, MAGIC_BYTES))
    if (compression !== undefined) return await this.decodeToDisk(compression)
    checkDeclaredType(request, memory.view(0, 8))
    target.checkFits(memory.sizeBytes)
    return { imageBytes: memory.sizeBytes, read: async (data, offset) => { data.set(memory.read(offset, data.length)) } }
  }

  async write (): Promise<void> {
    if (this.stream !== undefined || this.decoded !== undefined) return
    const { target, signal, steps } = this.context
    const totalBytes = this.memory.sizeBytes
    await writeRawFromMemory(target, this.memory, { signal, onProgress: (bytes) => { steps.progress('write', bytes, totalBytes) } })
    this.memory.clear()
  }

  async settle (): Promise<void> {
    await this.stream?.settle()
    await this.decoded?.settle()
  }

  /** The compressed bytes held, verified, decoded onto the disk (the head held back); the image as it lies there. */
  private async decodeToDisk (compression: StreamCompression): Promise<StagedImage> {
    const { steps, signal } = this.context
    const compressedBytes = this.memory.sizeBytes
    this.context.emit({ type: 'note', message: `The image is ${compression}-compressed: verified, now decompressed onto the disk, the first MiB held back.` })
    steps.enter('verify', 'write')
    const decoded = new RawStreamStage(this.context)
    this.decoded = decoded
    await this.feedHeld(decoded, (bytes) => {
      signal?.throwIfAborted()
      steps.progress('write', bytes, compressedBytes)
    })
    await decoded.end()
    this.memory.clear()
    return await decoded.verify()
  }

  /** Raw over the memory budget: what memory holds, and the rest, go straight to the disk. */
  private async switchToStream (reason: string): Promise<RawStreamStage> {
    const { memoryLimitBytes } = this.context
    this.context.logger?.info({ memoryLimitBytes, reason }, 'raw image over the memory budget: streaming to disk')
    const note = `The image is larger than the memory budget of ${memoryLimitBytes} bytes: streaming it to the disk, the first MiB held back until verified.`
    this.context.emit({ type: 'note', message: note })
    this.context.steps.enter('download', 'write')
    const stream = new RawStreamStage(this.context)
    this.stream = stream
    await this.feedHeld(stream)
    this.memory.clear()
    return stream
  }

  /** What memory holds, in order, to a stream stage; `after` each slab with the bytes given so far. */
  private async feedHeld (stream: RawStreamStage, after?: (bytes: number) => void): Promise<void> {
    // Kept slabs are never reused upstream: letting go of them is a no-op.
    for (const piece of this.memory.pieces()) {
      await stream.take({ ...piece, release: () => {} })
      after?.(piece.offset + piece.data.length)
    }
  }
}

/**
 * A qcow2 held in memory whole, its header and every table checked by openQcow2 in verify, its
 * guest disk written after: the disk is untouched on any bad input. A file whose announced size is
 * over the memory budget (or any, with `stream`) goes to a Qcow2StreamStage instead, before its
 * first byte; one that grows past the budget without a size announced is OVH's `qcow2 image is too
 * big to download in memory` (a stream needs the file's size to check its tables).
 */
export class Qcow2MemoryStage implements ImageStage {
  private readonly memory: MemoryImage
  private image: Qcow2Image | undefined
  private stream: Qcow2StreamStage | undefined

  constructor (private readonly context: StageContext, private readonly options: { stream: boolean; ranges: RangesOf | undefined }) {
    this.memory = new MemoryImage(context.memoryLimitBytes)
  }

  get mode (): 'memory' | 'stream' {
    return this.stream === undefined ? 'memory' : 'stream'
  }

  async begin (sizeBytes: number | undefined, validator?: string): Promise<void> {
    const { memoryLimitBytes, steps, emit, logger } = this.context
    if (sizeBytes === undefined) {
      if (this.options.stream) emit({ type: 'note', message: 'The server announced no size: the qcow2 is held in memory, then written.' })
      return
    }
    if (!this.options.stream && sizeBytes <= memoryLimitBytes) return
    if (sizeBytes > memoryLimitBytes) {
      logger?.info({ memoryLimitBytes, sizeBytes }, 'qcow2 over the memory budget: streaming to disk')
      const note = `The qcow2 is larger than the memory budget of ${memoryLimitBytes} bytes: streaming it to the disk, its first MiB held back.`
      emit({ type: 'note', message: note })
    }
    steps.enter('download', 'write')
    const stream = new Qcow2StreamStage(this.context, this.options.ranges)
    this.stream = stream
    await stream.begin(sizeBytes, validator)
  }

  slabBytes (): number {
    if (this.stream !== undefined) return this.stream.slabBytes()
    const bytes = this.memory.nextSlabBytes()
    if (bytes <= 0) throw errors.qcow2TooBig(new MemoryBudgetExceeded(this.memory.limitBytes))
    return bytes
  }

  async take (slab: Slab): Promise<void> {
    if (this.stream !== undefined) await this.stream.take(slab)
    else this.memory.adopt(slab.data)
  }

  async rewind (): Promise<void> {
    this.memory.clear()
    await this.stream?.rewind()
  }

  async end (): Promise<void> {
    await this.stream?.end()
  }

  async verify (): Promise<StagedImage> {
    if (this.stream !== undefined) return await this.stream.verify()
    const { request, target, signal } = this.context
    const memory = this.memory
    checkDeclaredType(request, memory.view(0, 8))
    const image = await openQcow2(memory, { signal })
    target.checkFits(image.virtualSizeBytes)
    this.image = image
    return { imageBytes: image.virtualSizeBytes, read: async (data, offset) => { data.set(readQcow2Guest(image, memory, offset, data.length)) } }
  }

  async write (): Promise<void> {
    if (this.stream !== undefined) return
    const image = this.image
    if (image === undefined) throw new Error('write before verify')
    const { target, signal, steps } = this.context
    await writeQcow2(image, this.memory, target, { signal, onProgress: (bytes) => { steps.progress('write', bytes, image.virtualSizeBytes) } })
    try {
      await target.sync()
    } catch (err) {
      throw errors.qcow2WriteFailed(err)
    }
    this.memory.clear()
  }

  async settle (): Promise<void> {
    await this.stream?.settle()
  }
}
