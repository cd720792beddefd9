import { BackgroundSync } from '../disk/background-sync.js'
import { InFlight } from '../disk/in-flight.js'
import type { Slab } from '../download/index.js'
import { errors } from '../errors/install-error.js'
import { CompressedImageError, createDecoder, detectCompression, type StreamCompression, type StreamDecoder } from '../image/stream-decoder.js'
import type { ImageStage, StageContext, StagedImage } from './image-stage.js'
import { checkImageHead } from './image-checks.js'

export const STREAM_SLAB_BYTES = 2 * 1024 * 1024 // 2 MiB per positional write
const MAX_IN_FLIGHT = 4 // writes under way at once, overlapping the download and the digest

/**
 * A raw image written while it downloads (`--stream`, or a raw image over the memory budget): each
 * slab goes to its place on the disk as it arrives, but the image's first MiB, held back by the
 * target and checked (checkImageHead) before any byte reaches the disk. A slab is let go of (and
 * reused upstream) once written.
 *
 * A file that starts with gzip's, zstd's or xz's magic number is a compressed raw image: its bytes
 * go through the decoder, and the decoded bytes are the image, held back, checked and written the
 * same way (a decompression bomb stops at the disk's size: checkFits).
 */
export class RawStreamStage implements ImageStage {
  readonly mode = 'stream'
  private writes = new InFlight(MAX_IN_FLIGHT)
  private readonly backgroundSync: BackgroundSync
  /** Bytes of the image (decoded, for a compressed file) taken since the last rewind. */
  private bytes = 0
  private headChecked = false
  /** The decoder of a compressed file, chosen by its first bytes; null for a plain raw image, undefined before. */
  private decoder: StreamDecoder | null | undefined

  constructor (private readonly context: StageContext) {
    this.backgroundSync = new BackgroundSync(context.target)
  }

  begin (sizeBytes: number | undefined): void {
    // Refused before any write: the announced size cannot fit.
    if (sizeBytes !== undefined) this.context.target.checkFits(sizeBytes)
  }

  slabBytes (): number {
    return STREAM_SLAB_BYTES
  }

  async take (slab: Slab): Promise<void> {
    if (this.decoder === undefined && slab.offset === 0) this.decoder = this.decoderFor(slab.data)
    if (this.decoder == null) {
      await this.takeImage(slab)
      return
    }
    try {
      await this.decoder.push(slab.data)
    } catch (err) {
      throw decodeFailure(err)
    }
    slab.release()
  }

  /** The compression of the file, once its first bytes came; undefined for a plain raw image. */
  get compression (): StreamCompression | undefined {
    return this.decoder?.compression
  }

  private decoderFor (first: Buffer): StreamDecoder | null {
    const compression = detectCompression(first)
    if (compression === undefined) return null
    this.context.logger?.info({ compression }, 'compressed raw image: decoding while writing')
    // A piece is given back (the decoder may reuse it) once written, as a download slab is.
    return createDecoder(compression, async (data, release) => { await this.takeImage({ data, offset: this.bytes, release }) })
  }

  /** Bytes of the image at their place: the head kept back, the rest written. */
  private async takeImage (slab: Slab): Promise<void> {
    const { target } = this.context
    const end = slab.offset + slab.data.length
    target.checkFits(end)
    this.bytes = end
    const headLength = target.head.length
    let skip = 0
    if (slab.offset < headLength) {
      skip = Math.min(slab.data.length, headLength - slab.offset)
      target.head.set(slab.data.subarray(0, skip), slab.offset)
      if (slab.offset + skip === headLength) await this.checkHead(headLength)
    }
    if (skip === slab.data.length) {
      slab.release()
      return
    }
    const data = slab.data.subarray(skip)
    await this.writes.add(async () => {
      try {
        await target.write(data, slab.offset + skip)
      } catch (err) {
        throw errors.rawWriteFailed(err)
      }
      this.backgroundSync.wrote(data.length)
      slab.release()
    })
  }

  async rewind (): Promise<void> {
    this.decoder?.destroy()
    this.decoder = undefined
    await this.writes.settle()
    this.writes = new InFlight(MAX_IN_FLIGHT)
    this.context.target.head.fill(0)
    this.bytes = 0
    this.headChecked = false
  }

  async end (): Promise<void> {
    try {
      await this.decoder?.end()
    } catch (err) {
      throw decodeFailure(err)
    }
    // An image shorter than the head: its checks run on what there is, still before any write.
    if (!this.headChecked) await this.checkHead(this.bytes)
    await this.writes.drain()
    try {
      await this.backgroundSync.settle()
      if (this.context.target.touched) await this.context.target.sync()
    } catch (err) {
      throw errors.rawWriteFailed(err)
    }
  }

  async verify (): Promise<StagedImage> {
    const { target } = this.context
    return { imageBytes: this.bytes, compression: this.compression, read: async (data, offset) => { await target.read(data, offset) } }
  }

  async write (): Promise<void> {}

  async settle (): Promise<void> {
    this.decoder?.destroy()
    await this.writes.settle()
    await this.backgroundSync.settle().catch(() => {})
  }

  /** What the image's first bytes allow to check, before any byte reaches the disk. */
  private async checkHead (bytes: number): Promise<void> {
    const { request, target } = this.context
    await checkImageHead(request, target.head.subarray(0, bytes), target)
    this.headChecked = true
  }
}

/** A stream that cannot be decoded, in the result's words; any other failure (a write, the disk's size) as it is. */
function decodeFailure (err: unknown): unknown {
  return err instanceof CompressedImageError ? errors.compressedImageInvalid(err.compression, err.reason, err) : err
}
