/**
 * The disk an install writes to, with the image's first MiB held back.
 *
 * The target owns the disk, the head (the image's first MiB: MBR, primary GPT, boot code, kept in
 * memory and written last) and the one fact that decides what a failure must undo: whether any byte
 * reached the disk. Everything the install writes goes through it: `write` and `read` overlay the
 * head on the disk (bytes below `head.length` live in memory), the planned tables and ConfigDrive
 * are applied with `applyPlan`, the head goes last with `writeHeadLast`, and `rollback(failure)`
 * is the one place that undoes a failure.
 */
import type { Logger } from 'pino'
import { HeadOverlay, type ImageIo } from '../disk/block-io.js'
import { HEAD_BYTES, makeUnbootable } from '../disk/boot-area.js'
import { Disk, rereadPartitionTable, type DiskKind } from '../disk/disk.js'
import { errors, type InstallError } from '../errors/install-error.js'
import { applyPlannedWrites, type TablePlan } from './partition-plan.js'

export interface TargetOptions {
  /** Awaited once, before the first byte reaches the disk (see Disk.beforeFirstWrite), with the disk as opened. */
  beforeFirstWrite?: (disk: { path: string; sizeBytes: number }) => Promise<void>
  logger?: Logger
}

/** How far the install got on the disk: what a failure must undo. */
type Progress =
  /** Nothing written, or only the image: a failure makes the disk unbootable once touched. */
  | 'image'
  /** The image and its backup GPT are on the disk: a ConfigDrive failure leaves the image without one. */
  | 'tables'

/** The disk as the checks see it: its path, size and sector size. */
export type DiskShape = Pick<Target, 'path' | 'sizeBytes' | 'logicalSectorBytes'>

/** What `rollback` did. */
export type Rollback = 'untouched' | 'unbootable' | 'kept-without-configdrive' | 'failed'

export class Target implements ImageIo {
  /** The image's first MiB (zeros past the image's end), held back: written last, by writeHeadLast. */
  readonly head: Buffer
  private disk: Disk
  /** The head over the disk: every image read and write of the install. */
  private io: HeadOverlay
  private open = true
  private progress: Progress = 'image'
  private plan: TablePlan | undefined

  private constructor (disk: Disk, private readonly options: TargetOptions) {
    this.disk = disk
    this.head = Buffer.alloc(Math.min(HEAD_BYTES, disk.sizeBytes))
    this.io = new HeadOverlay(this.head, disk)
    const record = options.beforeFirstWrite
    if (record !== undefined) disk.beforeFirstWrite = async () => { await record({ path: disk.path, sizeBytes: disk.sizeBytes }) }
  }

  /** Opens the disk (O_EXCL on a block device: refused while mounted). Throws DISK_UNAVAILABLE. */
  static async open (path: string, options: TargetOptions = {}): Promise<Target> {
    return new Target(await Disk.open(path), options)
  }

  get path (): string { return this.disk.path }
  get kind (): DiskKind { return this.disk.kind }
  get sizeBytes (): number { return this.disk.sizeBytes }
  get logicalSectorBytes (): number { return this.disk.logicalSectorBytes }

  /** True once a write was started on the disk: from then on a failure must leave it unbootable. */
  get touched (): boolean {
    return this.disk.touched
  }

  /** The one check of an image's size against the disk: IMAGE_TOO_BIG_FOR_DISK when `bytes` cannot fit. */
  checkFits (bytes: number): void {
    if (bytes > this.sizeBytes) throw errors.imageTooBigForDisk(bytes, this.path, this.sizeBytes)
  }

  /** The image's bytes [offset, offset + data.length): the head's below `head.length`, the disk's above. */
  async read (data: Uint8Array, offset: number): Promise<void> {
    await this.io.read(data, offset)
  }

  /** Writes `data` at `offset` of the image: into the head below `head.length`, onto the disk above. */
  async write (data: Uint8Array, offset: number): Promise<void> {
    await this.io.write(data, offset)
  }

  async sync (): Promise<void> {
    await this.disk.sync()
  }

  /**
   * The plan's writes past the head, applied, synced and read back: `tables` (the disk's last MiB
   * past the image zeroed, the backup GPT) or `configdrive` (the filesystem in config-2).
   */
  async applyPlan (plan: TablePlan, part: 'tables' | 'configdrive'): Promise<void> {
    this.plan = plan
    if (part === 'tables') {
      await applyPlannedWrites(this.disk, plan.writes.slice(0, plan.gptWrites), (cause) => errors.gptMoveFailed(cause))
      this.progress = 'tables'
    } else {
      await applyPlannedWrites(this.disk, plan.writes.slice(plan.gptWrites), (cause) => errors.configDriveFailed(cause))
    }
  }

  /** Everything else is on the disk: sync, the head (as planned: with the relocated GPT) at offset 0, sync. */
  async writeHeadLast (head: Buffer, failed: (cause: unknown) => InstallError): Promise<void> {
    try {
      await this.disk.sync()
      await this.disk.write(head, 0)
      await this.disk.sync()
    } catch (err) {
      throw failed(err)
    }
  }

  /** Lets go of the disk: while it is open with O_EXCL the kernel refuses to re-read its table or mount a partition. */
  async close (): Promise<void> {
    if (!this.open) return
    this.open = false
    await this.disk.close().catch(() => {})
  }

  /**
   * Undoes what `failure` left: nothing when no byte reached the disk; after a ConfigDrive failure
   * with the image and its tables whole (not a cancel), the image left bootable as written without
   * the ConfigDrive; otherwise the disk's first and last MiB zeroed. A disk already let go of (the
   * mount check) is opened again for it, then let go of and its table re-read.
   */
  async rollback (failure: InstallError, options: { cancelled: boolean }): Promise<Rollback> {
    const logger = this.options.logger
    if (!this.touched) return 'untouched'
    const wasClosed = !this.open
    if (wasClosed) {
      try {
        this.disk = await Disk.open(this.disk.path)
        this.io = new HeadOverlay(this.head, this.disk)
        this.open = true
      } catch (err) {
        logger?.error({ err }, `could not open ${this.disk.path} again to undo the install`)
        return 'failed'
      }
    }
    let outcome: Rollback
    if (failure.code === 'CONFIGDRIVE_FAILED' && this.progress === 'tables' && this.plan !== undefined && !options.cancelled) {
      outcome = await this.keepWithoutConfigDrive(this.plan)
    } else {
      outcome = await makeUnbootable(this.disk, logger) ? 'unbootable' : 'failed'
    }
    if (wasClosed) {
      await this.close()
      if (this.kind === 'block') await rereadPartitionTable(this.path).catch((err: unknown) => logger?.warn({ err }, 'partition table re-read failed'))
    }
    return outcome
  }

  /**
   * The ConfigDrive failed: the GPT step's writes again (the backup GPT without config-2), what the
   * ConfigDrive covered written back as it was (the image's own bytes of a reused config-2, zeros
   * past the image), then the head as it was after the GPT step.
   */
  private async keepWithoutConfigDrive (plan: TablePlan): Promise<Rollback> {
    try {
      await applyPlannedWrites(this.disk, [...plan.writes.slice(0, plan.gptWrites), ...plan.configDriveUndo], (cause) => errors.gptMoveFailed(cause))
      await this.writeHeadLast(plan.headAfterGpt, (cause) => errors.gptMoveFailed(cause))
      return 'kept-without-configdrive'
    } catch (err) {
      this.options.logger?.error({ err }, 'could not leave the image in place without a ConfigDrive')
      return await makeUnbootable(this.disk, this.options.logger) ? 'unbootable' : 'failed'
    }
  }
}
