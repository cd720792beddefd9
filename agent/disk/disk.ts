import { constants, promises as fs } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { errors } from '../errors/install-error.js'
import { checkRange } from './block-io.js'
import { runCommand } from './run-command.js'

export type DiskKind = 'file' | 'block'

export interface DiskOpenOptions {
  /**
   * Open read-only (a capture's source): nothing can be written through it. A block device is
   * still opened exclusively, so one in use (mounted, swap, held by device-mapper or md) is refused
   * as for an install: its bytes would change while they are read.
   */
  readOnly?: boolean
}

/** A device number (`stat.rdev`) as MAJOR:MINOR, the form sysfs uses (/sys/dev/block/MAJOR:MINOR, `dev` files). */
export function deviceNumber (rdev: number): string {
  // Linux dev_t encoding as glibc's gnu_dev_major/minor decode it.
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff)
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff)
  return `${major}:${minor}`
}

/** Where the kernel describes a block device: /sys/dev/block/MAJOR:MINOR. */
function sysfsDir (rdev: number): string {
  return `/sys/dev/block/${deviceNumber(rdev)}`
}

/**
 * Asks the kernel to read a block device's partition table again. Node has no ioctl(BLKRRPART);
 * util-linux or busybox `blockdev` does exactly that one call. The kernel refuses (EBUSY) while the
 * device is open with O_EXCL, as a Disk holds it: call this after Disk.close().
 */
export async function rereadPartitionTable (path: string): Promise<void> {
  try {
    await runCommand('blockdev', ['--rereadpt', path], 30_000) // 30 s
  } catch (err) {
    throw new Error(`blockdev --rereadpt ${path}: ${(err as Error).message}`, { cause: err })
  }
}

async function readSysfsInteger (path: string): Promise<number> {
  const text = (await fs.readFile(path, 'utf8')).trim()
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`unexpected value ${JSON.stringify(text)} in ${path}`)
  return value
}

function describe (err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'ENOENT') return 'no such file or device'
  if (code === 'EBUSY') return 'it is in use (mounted, or held by another program)'
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied'
  if (code === 'EROFS') return 'it is read-only'
  if (typeof code === 'string') return code
  return err instanceof Error ? err.message : 'unknown error'
}

/**
 * The install target: a regular file (tests, virtual disks) or a block device.
 * Positional I/O only; every write is checked against the size so nothing lands outside the disk.
 */
export class Disk {
  /**
   * Awaited once, before the first byte is written (by any path: the streamed image, the memory
   * write, the partition tables, an undo): the service records there, durably, that the disk may
   * be half-written, so a restart after a kill can make it unbootable.
   */
  beforeFirstWrite: (() => Promise<void>) | undefined
  private firstWrite: Promise<void> | undefined
  private wrote = false

  private constructor (
    readonly path: string,
    readonly kind: DiskKind,
    readonly sizeBytes: number,
    readonly logicalSectorBytes: number,
    private readonly handle: FileHandle,
  ) {}

  static async open (path: string, options: DiskOpenOptions = {}): Promise<Disk> {
    let stat
    try {
      stat = await fs.stat(path)
    } catch (err) {
      throw errors.diskUnavailable(path, describe(err), err)
    }
    if (!stat.isFile() && !stat.isBlockDevice()) throw errors.diskUnavailable(path, 'not a regular file or a block device')
    const kind: DiskKind = stat.isBlockDevice() ? 'block' : 'file'
    // O_EXCL on a block device fails with EBUSY while it is mounted or claimed: never write under
    // a live filesystem, nor read one as a capture (its bytes change under the reader).
    const flags = (options.readOnly === true ? constants.O_RDONLY : constants.O_RDWR) | (kind === 'block' ? constants.O_EXCL : 0)
    let handle: FileHandle
    try {
      handle = await fs.open(path, flags)
    } catch (err) {
      throw errors.diskUnavailable(path, describe(err), err)
    }
    try {
      let sizeBytes = stat.size
      let logicalSectorBytes = 512
      if (kind === 'block') {
        const dir = sysfsDir(stat.rdev)
        // /sys/…/size counts 512-byte units whatever the device's sector size.
        sizeBytes = (await readSysfsInteger(`${dir}/size`)) * 512
        logicalSectorBytes = await readSysfsInteger(`${dir}/queue/logical_block_size`)
          .catch(async () => await readSysfsInteger(`${dir}/../queue/logical_block_size`))
      }
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new Error('size is zero')
      if (![512, 1024, 2048, 4096].includes(logicalSectorBytes)) throw new Error(`unsupported logical sector size ${logicalSectorBytes}`)
      return new Disk(path, kind, sizeBytes, logicalSectorBytes, handle)
    } catch (err) {
      await handle.close()
      throw errors.diskUnavailable(path, describe(err), err)
    }
  }

  /** True once a write was started on the disk: from then on a failure must leave it unbootable. */
  get touched (): boolean {
    return this.wrote
  }

  /** Writes all of `data` at `offset` (loops on short writes). */
  async write (data: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, data.length, this.path)
    if (!this.wrote) {
      this.firstWrite ??= this.beforeFirstWrite?.() ?? Promise.resolve()
      await this.firstWrite
      this.wrote = true
    }
    let done = 0
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, offset + done)
      if (bytesWritten <= 0) throw new Error(`short write at ${offset + done} on ${this.path}`)
      done += bytesWritten
    }
  }

  /** Fills `data` from `offset`; bytes past the end of a regular file read as zeros. */
  async read (data: Uint8Array, offset: number): Promise<void> {
    checkRange(this, offset, data.length, this.path)
    let done = 0
    while (done < data.length) {
      const { bytesRead } = await this.handle.read(data, done, data.length - done, offset + done)
      if (bytesRead === 0) {
        data.fill(0, done)
        return
      }
      done += bytesRead
    }
  }

  /** Writes zeros over [offset, offset + length). */
  async zero (offset: number, length: number): Promise<void> {
    const block = Buffer.alloc(Math.min(length, 1024 * 1024)) // 1 MiB of zeros at a time
    for (let at = offset; at < offset + length; at += block.length) {
      await this.write(block.subarray(0, Math.min(block.length, offset + length - at)), at)
    }
  }

  /** The disk's size now (a capture checks its source did not change size while read). */
  async measureSize (): Promise<number> {
    if (this.kind === 'file') return (await this.handle.stat()).size
    return (await readSysfsInteger(`${sysfsDir((await this.handle.stat()).rdev)}/size`)) * 512
  }

  async sync (): Promise<void> {
    await this.handle.datasync()
  }

  async close (): Promise<void> {
    await this.handle.close()
  }
}
