import { BackgroundSync } from '../disk/background-sync.js'
import type { Slab } from '../download/index.js'
import { errors } from '../errors/install-error.js'
import { fetchQcow2Tables, type RangeReader } from '../image/qcow2/fetch-tables.js'
import type { Qcow2Image } from '../image/qcow2/index.js'
import { Qcow2StreamWriter } from '../image/qcow2/stream-writer.js'
import { zeroUnbacked, type Qcow2WriteTarget } from '../image/qcow2/write-qcow2.js'
import type { ImageStage, StageContext, StagedImage } from './image-stage.js'
import { checkDeclaredType } from './image-checks.js'
import { STREAM_SLAB_BYTES } from './raw-stream-stage.js'
import { safeUrl } from '../report/redact.js'

/** Range readers of the image, for the version (validator, size) the download's answer showed. */
export type RangesOf = (version: { validator: string | undefined; totalBytes: number }) => RangeReader

/**
 * A qcow2 written while it downloads (over the memory budget, or `--stream`), its file read once.
 * Its tables come first when the server serves byte ranges: the header, L1 and L2 tables fetched and
 * checked before the download starts (every refusal before any write), then each cluster of the
 * stream goes to its guest offset as it arrives, the tables met on the way compared with those
 * fetched (a difference: the file changed). A server without ranges: the tables are read from the
 * stream as they come, the data met before its table kept within the memory budget. The guest's
 * first MiB stays in the target's head until the end; the guest ranges no data backs are made zero
 * once the digest matched.
 */
export class Qcow2StreamStage implements ImageStage {
  readonly mode = 'stream'
  private writer: Qcow2StreamWriter | undefined
  private image: Qcow2Image | undefined
  private readonly backgroundSync: BackgroundSync
  private readonly disk: Qcow2WriteTarget

  constructor (private readonly context: StageContext, private readonly ranges: RangesOf | undefined) {
    const { target } = context
    this.backgroundSync = new BackgroundSync(target)
    this.disk = {
      sizeBytes: target.sizeBytes,
      write: async (data, offset) => {
        await target.write(data, offset)
        this.backgroundSync.wrote(data.length)
      },
      read: async (data, offset) => { await target.read(data, offset) },
    }
  }

  /** The file's size is known (the stage is chosen with it): the tables are fetched, or the stream will bring them. */
  async begin (sizeBytes: number | undefined, validator?: string): Promise<void> {
    const { request, target, memoryLimitBytes, signal, logger, emit } = this.context
    if (sizeBytes === undefined) throw new Error('a streamed qcow2 needs the size of its file')
    const checkFirstBytes = (first: Buffer): void => { checkDeclaredType(request, first) }
    // The download's answer waits, unread, while the tables come (of its version: If-Range).
    const readRange = this.ranges?.({ validator, totalBytes: sizeBytes })
    const fetched = readRange === undefined ? undefined : await fetchQcow2Tables(sizeBytes, readRange, { signal, checkFirstBytes })
    if (fetched === undefined) {
      const note = 'The server does not serve byte ranges: the qcow2\'s tables are read from the stream, data met before its table kept in memory.'
      emit({ type: 'note', message: note })
    } else {
      const { requests, bytes } = fetched
      logger?.info({ requests, bytes }, 'qcow2 tables fetched with Range requests')
      const note = `The qcow2's tables were read first (${requests} Range requests, ${bytes} bytes) and checked: ` +
        'the file is read once, each cluster written as it arrives.'
      emit({ type: 'note', message: note })
    }
    this.writer = new Qcow2StreamWriter(this.disk, {
      fileBytes: sizeBytes,
      fetched: fetched?.tables,
      holdLimitBytes: memoryLimitBytes,
      signal,
      onHeader: (header) => { target.checkFits(header.virtualSizeBytes) },
      changed: (reason) => errors.imageChanged(safeUrl(request.imageUrl), reason),
    })
    await this.writer.start()
  }

  slabBytes (): number {
    return STREAM_SLAB_BYTES
  }

  async take (slab: Slab): Promise<void> {
    if (slab.offset === 0) checkDeclaredType(this.context.request, slab.data.subarray(0, 8))
    await this.started().take(slab)
  }

  async rewind (): Promise<void> {
    this.context.target.head.fill(0)
    await this.started().rewind()
  }

  async end (): Promise<void> {
    const writer = this.started()
    this.image = await writer.end()
    if (writer.heldPeakBytes > 0) this.context.logger?.info({ heldPeakBytes: writer.heldPeakBytes }, 'qcow2 data kept until its tables came')
    await this.sync()
  }

  /** The digest matched: the guest ranges no data backs are made zero, then the image is as it will lie on the disk. */
  async verify (): Promise<StagedImage> {
    const image = this.image
    const writer = this.started()
    if (image === undefined) throw new Error('verify before end')
    const { steps, signal, target } = this.context
    steps.enter('verify', 'write')
    // The data is written: the write step goes on from there, through the ranges made zero.
    const written = writer.guestBytesWritten
    const onProgress = (bytes: number): void => { steps.progress('write', written + bytes, image.virtualSizeBytes) }
    await zeroUnbacked(image, writer.tables, this.disk, { signal, onProgress })
    await this.sync()
    return { imageBytes: image.virtualSizeBytes, read: async (data, offset) => { await target.read(data, offset) } }
  }

  async write (): Promise<void> {}

  async settle (): Promise<void> {
    await this.writer?.settle()
    await this.backgroundSync.settle().catch(() => {})
  }

  private started (): Qcow2StreamWriter {
    if (this.writer === undefined) throw new Error('the qcow2 stream has not begun')
    return this.writer
  }

  private async sync (): Promise<void> {
    try {
      await this.backgroundSync.settle()
      if (this.context.target.touched) await this.context.target.sync()
    } catch (err) {
      throw errors.qcow2WriteFailed(err)
    }
  }
}
