/**
 * The target: a sparse disk file that held another system before. Its OLD GPT (made by sgdisk: a
 * partition named OLD_OS_ROOT, another after it, the backup at the disk's end) and bands of
 * random-ish bytes at its start, middle and end, so that a stale table, an untouched disk and a
 * zeroed MiB can all be told apart. Made once, then laid down again before every case.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, ftruncateSync, openSync, readSync, statSync, writeSync } from 'node:fs'
import { readRange as readBytes } from '../test/helpers/disk-files.js'
import { Random } from './random.js'

export { readBytes }

export const MiB = 1024 * 1024
export const DISK_BYTES = 64 * MiB
export const OLD_PARTITION_NAME = 'OLD_OS_ROOT'

interface Band { offset: number; bytes: Buffer }

export class TargetDisk {
  private constructor (readonly path: string, private readonly bands: Band[], readonly pristineHash: string) {}

  /** Lays the old system down on `path` and keeps its bytes to restore it from. */
  static create (path: string): TargetDisk {
    const random = new Random(0x01d05)
    const starts = [0, DISK_BYTES / 2, DISK_BYTES - 2 * MiB]
    const fd = openSync(path, 'w')
    try {
      ftruncateSync(fd, DISK_BYTES)
      for (const offset of starts) writeSync(fd, random.bytes(2 * MiB), 0, 2 * MiB, offset)
    } finally {
      closeSync(fd)
    }
    execFileSync('sgdisk', ['-o', '-n', '1:2048:+40M', '-t', '1:8300', '-c', `1:${OLD_PARTITION_NAME}`, '-n', '2:0:0', '-c', '2:OLD_DATA', path], {
      stdio: 'ignore',
    })
    const bands = starts.map((offset) => ({ offset, bytes: readBytes(path, offset, 2 * MiB) }))
    return new TargetDisk(path, bands, hashFile(path))
  }

  /** The old system again, byte for byte (the file truncated, so nothing a case wrote survives). */
  restore (): void {
    const fd = openSync(this.path, 'w')
    try {
      ftruncateSync(fd, DISK_BYTES)
      for (const band of this.bands) writeSync(fd, band.bytes, 0, band.bytes.length, band.offset)
    } finally {
      closeSync(fd)
    }
  }

  sizeBytes (): number {
    return statSync(this.path).size
  }
}

/** sha256 of the whole file, read in 4 MiB pieces. */
export function hashFile (path: string): string {
  const hash = createHash('sha256')
  const piece = Buffer.alloc(4 * MiB)
  const fd = openSync(path, 'r')
  try {
    for (let at = 0; ; at += piece.length) {
      const n = readSync(fd, piece, 0, piece.length, at)
      if (n === 0) break
      hash.update(piece.subarray(0, n))
    }
  } finally {
    closeSync(fd)
  }
  return hash.digest('hex')
}
