import { BackgroundSync } from '../disk/background-sync.js'
import { InFlight } from '../disk/in-flight.js'
import type { Slab } from '../download/index.js'
import { errors } from '../errors/install-error.js'
import type { ImageStage, StageContext, StagedImage } from './image-stage.js'
import { checkImageHead } from './image-checks.js'

export const STREAM_SLAB_BYTES = 2 * 1024 * 1024 // 2 MiB per positional write
const MAX_IN_FLIGHT = 4 // writes under way at once, overlapping the download and the digest

/**
 * A raw image written while it downloads (`--stream`, or a raw image over the memory budget): each
 * slab goes to its place on the disk as it arrives, but the image's first MiB, held back by the
 * target and checked (checkImageHead) before any byte reaches the disk. A slab is let go of (and
 * reused upstream) once written.
 */
export class RawStreamStage implements ImageStage {
  readonly mode = 'stream'
  private writes = new InFlight(MAX_IN_FLIGHT)
  private readonly backgroundSync: BackgroundSync
  /** Bytes taken since the last rewind. */
  private bytes = 0
  private headChecked = false

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
    await this.writes.settle()
    this.writes = new InFlight(MAX_IN_FLIGHT)
    this.context.target.head.fill(0)
    this.bytes = 0
    this.headChecked = false
  }

  async end (): Promise<void> {
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
    return { imageBytes: this.bytes, read: async (data, offset) => { await target.read(data, offset) } }
  }

  async write (): Promise<void> {}

  async settle (): Promise<void> {
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
