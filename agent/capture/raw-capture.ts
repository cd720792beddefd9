import { Readable } from 'node:stream'
import { createGzip } from 'node:zlib'
import zstd from 'zstd-napi/binding.js'
import type { BlockIo } from '../disk/partition-table.js'
import type { FreeSpace } from './free-space.js'

/**
 * A disk captured as a raw image: every byte, the free blocks of its ext filesystems zeroed (so
 * deleted data never leaves the server), read 4 MiB at a time; compressed with zstd as it goes
 * when asked (the free space and zero clusters then cost next to nothing), with the frame's
 * content checksum and its size announced, so `zstd -d` and the installer's decoder check it.
 * Streamable: installable by the compressed-raw support (a `.raw.zst` with imageType raw).
 */

const READ_BYTES = 4 * 1024 * 1024
/** zstd's level 3 (its default): measured for issue 14's bench later; the CLI may expose it. */
const ZSTD_LEVEL = 3

/** The disk's bytes, front to back, free space zeroed. */
export async function * rawCaptureStream (io: BlockIo, free: FreeSpace): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < io.sizeBytes; offset += READ_BYTES) {
    const chunk = Buffer.allocUnsafe(Math.min(READ_BYTES, io.sizeBytes - offset))
    if (free.covers(offset, offset + chunk.length)) chunk.fill(0)
    else {
      await io.read(chunk, offset)
      free.zeroIn(chunk, offset)
    }
    yield chunk
  }
}

/** `source` as one zstd frame (its content size `sizeBytes` pledged, content checksum on). */
export async function * zstdCompress (source: AsyncIterable<Buffer>, sizeBytes: number): AsyncGenerator<Buffer> {
  const context = new zstd.CCtx()
  context.setParameter(zstd.CParameter.compressionLevel, ZSTD_LEVEL)
  context.setParameter(zstd.CParameter.checksumFlag, 1)
  context.setPledgedSrcSize(sizeBytes)
  const out = Buffer.allocUnsafe(zstd.cStreamOutSize())
  const run = function * (input: Buffer, end: boolean): Generator<Buffer> {
    let rest = input
    for (;;) {
      const [remaining, produced, consumed] = context.compressStream2(out, rest, end ? zstd.EndDirective.end : zstd.EndDirective.continue)
      rest = rest.subarray(consumed)
      if (produced > 0) yield Buffer.from(out.subarray(0, produced))
      if (end ? remaining === 0 : rest.length === 0) return
    }
  }
  for await (const chunk of source) yield * run(chunk, false)
  yield * run(Buffer.alloc(0), true)
}

/** `source` as gzip (level 6, zlib's default; its CRC-32 and size in the trailer, checked by `gzip -t` and the installer's decoder). */
export async function * gzipCompress (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const input = Readable.from(source, { objectMode: false })
  const gzip = createGzip({ level: 6 })
  // pipe() keeps the pace (the disk is read as the upload takes the bytes); a read error fails the output.
  input.once('error', (err) => gzip.destroy(err))
  input.pipe(gzip)
  try {
    for await (const chunk of gzip) yield chunk as Buffer
  } finally {
    input.destroy() // the reader stopped early (an upload that failed): stop reading the disk
  }
}
