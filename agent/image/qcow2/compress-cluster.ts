import { constants as zlibConstants, deflateRawSync } from 'node:zlib'
import zstd from 'zstd-napi/binding.js'
import type { CompressionType } from './decompress.js'

/**
 * One cluster compressed as QEMU compresses it for a qcow2 (block/qcow2-threads.c), so that any
 * reader of QEMU's compressed clusters reads ours:
 * - deflate (compression_type 0): a raw deflate stream (no zlib header), zlib's default level (6),
 *   a 4 KiB window (windowBits −12) and memLevel 9, QEMU's `deflateInit2` arguments;
 * - zstd (compression_type 1): one frame of zstd's default level (3), made in one call with the
 *   whole cluster in hand (its size written in the frame header, no checksum), as QEMU's single
 *   `ZSTD_compressStream2(…, ZSTD_e_end)`.
 * Deterministic: the same bytes give the same stream (a capture compresses each cluster twice, to
 * lay the file out and then to send it, and relies on that).
 */

/** zstd's default level, QEMU's (it sets none) and raw-capture's. */
export const ZSTD_LEVEL = 3
/** QEMU: `deflateInit2(&strm, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY)`. */
const DEFLATE_OPTIONS = {
  level: zlibConstants.Z_DEFAULT_COMPRESSION,
  windowBits: 12, // 4 KiB window; node makes it raw (−12) for deflateRaw
  memLevel: 9,
  strategy: zlibConstants.Z_DEFAULT_STRATEGY,
} as const

let zstdContext: zstd.CCtx | undefined
let zstdOut = Buffer.alloc(0)

/** `cluster` compressed; the result is a new buffer (or, zstd, a view valid until the next call). */
export function compressCluster (type: CompressionType, cluster: Uint8Array): Uint8Array {
  if (type === 'deflate') return deflateRawSync(cluster, DEFLATE_OPTIONS)
  if (zstdContext === undefined) {
    zstdContext = new zstd.CCtx()
    zstdContext.setParameter(zstd.CParameter.compressionLevel, ZSTD_LEVEL)
  }
  const bound = zstd.compressBound(cluster.length)
  if (zstdOut.length < bound) zstdOut = Buffer.allocUnsafe(bound)
  const length = zstdContext.compress2(zstdOut, cluster)
  return zstdOut.subarray(0, length)
}
