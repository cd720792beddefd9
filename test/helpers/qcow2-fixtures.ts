import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { MemoryImage } from '../../agent/image/memory-image.js'
import type { Qcow2WriteTarget } from '../../agent/image/qcow2/index.js'

/**
 * qcow2 fixtures made at test time by qemu-img and qemu-io (nothing large is committed), and
 * qemu-img as the referee: `qemu-img convert -O raw` of the same file is what an install must equal.
 */

export const MiB = 1024 * 1024

export function qemuImg (args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Runs qemu-io commands, in order, on one qcow2 file. */
export function qemuIo (file: string, commands: string[]): void {
  if (commands.length === 0) return
  execFileSync('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file], { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** `qemu-img create -f qcow2 -o OPTIONS FILE SIZE`. */
export function createQcow2 (file: string, sizeBytes: number, options: string[] = []): void {
  qemuImg(['create', '-q', '-f', 'qcow2', ...(options.length > 0 ? ['-o', options.join(',')] : []), file, String(sizeBytes)])
}

/** `qemu-img convert -O qcow2 [-c] -o OPTIONS FROM TO`. */
export function convertQcow2 (from: string, to: string, options: { compress?: boolean; options?: string[] } = {}): void {
  const o = options.options ?? []
  qemuImg(['convert', '-O', 'qcow2', ...(options.compress === true ? ['-c'] : []), ...(o.length > 0 ? ['-o', o.join(',')] : []), from, to])
}

/** What qemu-img makes of the image: its raw conversion, read whole. */
export function qemuRaw (file: string): Buffer {
  const raw = `${file}.raw`
  qemuImg(['convert', '-O', 'raw', file, raw])
  return readFileSync(raw)
}

/**
 * A file of varied, compressible bytes (text-like lines with counters) for `write -s FILE`:
 * deflate and zstd give real streams for it, not the few bytes a constant pattern compresses to.
 */
export function makePatternFile (dir: string, bytes = 4 * MiB): string {
  const file = join(dir, 'pattern.bin')
  const out = Buffer.alloc(bytes)
  let at = 0
  for (let line = 0; at < bytes; line++) {
    at += out.write(`line ${line} ${(line * 2654435761) >>> 0} ${'abcdefghij'.repeat(line % 7)}\n`, at)
  }
  writeFileSync(file, out)
  return file
}

/** `bytes` as the download leaves them: copied once into slabs of the sizes the image asks, adopted. */
export function memoryImageOf (bytes: Uint8Array, limitBytes = Math.max(1, bytes.length)): MemoryImage {
  const image = new MemoryImage(limitBytes)
  for (let at = 0; at < bytes.length;) {
    // Past the budget (nextSlabBytes 0), the rest is offered whole: adopt refuses it, as the download's would be.
    const slab = Buffer.from(new SharedArrayBuffer(image.nextSlabBytes() || bytes.length - at))
    const n = Math.min(slab.length, bytes.length - at)
    slab.set(bytes.subarray(at, at + n))
    image.adopt(slab.subarray(0, n))
    at += n
  }
  return image
}

/** The downloaded file as the reader gets it: in memory. */
export function loadSource (file: string): MemoryImage {
  return memoryImageOf(readFileSync(file))
}

/** Sets bits in the big-endian u64 at `offset` of a file (header patches). */
export function patchU64 (file: string, offset: number, update: (value: bigint) => bigint): void {
  const bytes = readFileSync(file)
  bytes.writeBigUInt64BE(update(bytes.readBigUInt64BE(offset)), offset)
  writeFileSync(file, bytes)
}

export function patchU32 (file: string, offset: number, value: number): void {
  const bytes = readFileSync(file)
  bytes.writeUInt32BE(value, offset)
  writeFileSync(file, bytes)
}

/**
 * A target in memory that refuses any I/O outside [0, sizeBytes) (it throws a plain Error, which
 * writeQcow2 would turn into QCOW2_WRITE_FAILED) and keeps count of what it was asked.
 */
export class MemoryTarget implements Qcow2WriteTarget {
  readonly bytes: Buffer
  readonly writes: Array<{ offset: number; length: number }> = []
  reads = 0
  inFlight = 0
  maxInFlight = 0
  outOfBounds = 0

  constructor (readonly sizeBytes: number, fill = 0xa5) {
    this.bytes = Buffer.alloc(sizeBytes, fill)
  }

  private check (offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > this.sizeBytes) {
      this.outOfBounds++
      throw new Error(`I/O of ${length} bytes at ${offset} outside the ${this.sizeBytes}-byte target`)
    }
  }

  async write (data: Uint8Array, offset: number): Promise<void> {
    this.check(offset, data.length)
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    try {
      await new Promise((resolve) => setImmediate(resolve))
      this.bytes.set(data, offset)
      this.writes.push({ offset, length: data.length })
    } finally {
      this.inFlight--
    }
  }

  async read (data: Uint8Array, offset: number): Promise<void> {
    this.check(offset, data.length)
    this.reads++
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    try {
      await new Promise((resolve) => setImmediate(resolve))
      data.set(this.bytes.subarray(offset, offset + data.length))
    } finally {
      this.inFlight--
    }
  }
}
