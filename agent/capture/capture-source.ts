import type { BlockIo } from '../disk/partition-table.js'
import { errors } from '../errors/install-error.js'

/** What a capture reads: its disk, opened read only. */
export interface SourceDisk {
  readonly path: string
  readonly sizeBytes: number
  readonly logicalSectorBytes: number
  read: (data: Uint8Array, offset: number) => Promise<void>
  measureSize: () => Promise<number>
}

/**
 * The disk a capture reads, its failures said in the result style: a read that fails is
 * CAPTURE_READ_FAILED naming the byte (not an internal error), and `checkUnchanged` (after the
 * upload, before CAPTURED is said) refuses a disk whose size changed while it was read. Writes
 * throw: a capture's source is never written (the disk is opened read only as well).
 */
export class CaptureSource implements BlockIo {
  readonly sizeBytes: number
  readonly logicalSectorBytes: number

  constructor (private readonly disk: SourceDisk) {
    this.sizeBytes = disk.sizeBytes
    this.logicalSectorBytes = disk.logicalSectorBytes
  }

  async read (data: Uint8Array, offset: number): Promise<void> {
    try {
      await this.disk.read(data, offset)
    } catch (err) {
      throw errors.captureReadFailed(this.disk.path, `a read failed at byte ${offset}`, err)
    }
  }

  async write (): Promise<void> {
    throw new Error(`${this.disk.path} is a capture's source: it is never written`)
  }

  async checkUnchanged (): Promise<void> {
    let size: number
    try {
      size = await this.disk.measureSize()
    } catch (err) {
      throw errors.captureReadFailed(this.disk.path, 'its size could not be measured again', err)
    }
    if (size !== this.sizeBytes) {
      throw errors.captureReadFailed(this.disk.path, `it changed size (${this.sizeBytes} bytes, now ${size})`, new Error('size changed'))
    }
  }
}
