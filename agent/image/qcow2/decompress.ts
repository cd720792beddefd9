import { constants as zlibConstants, inflateRawSync } from 'node:zlib'
import { Decompress as ZstdStream, decompress as zstdDecompress } from 'fzstd'

/**
 * Compressed clusters (spec: "Compressed Clusters Descriptor"; qemu's block/qcow2-threads.c).
 * The descriptor gives the compressed size only to 512-byte precision, so the bytes handed in
 * usually end with the start of the next cluster's stream: both decoders stop at the end of their
 * stream and ignore what follows. Both must yield exactly one cluster, as qemu requires.
 * These run on the decompression pool's threads; errors are plain Errors, which the writer turns
 * into QCOW2_DAMAGED.
 */

export type CompressionType = 'deflate' | 'zstd'

/** Decodes one compressed cluster into `output`, exactly its length. */
export function decompressCluster (type: CompressionType, input: Uint8Array, output: Uint8Array): void {
  if (type === 'deflate') inflateCluster(input, output)
  else zstdDecompressCluster(input, output)
}

/**
 * Deflate (compression_type 0): a raw deflate stream. qemu inflates with a 4 KiB window
 * (windowBits −12); the default 32 KiB window decodes those streams and a few more. Like qemu,
 * input that ends before the stream does is accepted as long as a whole cluster came out
 * (Z_SYNC_FLUSH instead of Z_FINISH): the last compressed cluster may reach past the end of the
 * file, where qemu reads zeros.
 */
export function inflateCluster (input: Uint8Array, output: Uint8Array): void {
  const inflated = inflateRawSync(input, {
    finishFlush: zlibConstants.Z_SYNC_FLUSH,
    maxOutputLength: output.length, // more than one cluster is an error (ERR_BUFFER_TOO_LARGE)
    chunkSize: Math.max(output.length, 64), // one output chunk, so no concatenation
  })
  if (inflated.length !== output.length) throw new Error(`deflate stream gave ${inflated.length} bytes instead of ${output.length}`)
  output.set(inflated)
}

/** Zstandard frame magic 0xFD2FB528, LE (RFC 8878, 3.1.1). */
const ZSTD_MAGIC = 0xfd2fb528
/** Skippable frames: magic 0x184D2A50..5F, LE (RFC 8878, 3.1.2). */
const ZSTD_SKIPPABLE_MASK = 0xfffffff0
const ZSTD_SKIPPABLE_MAGIC = 0x184d2a50
/** Block_Maximum_Size is at most 128 KiB (RFC 8878, 3.1.1.2.3). */
const ZSTD_MAX_BLOCK_BYTES = 128 * 1024
/**
 * The largest window accepted for a frame that does not declare its size. qemu's frames always
 * declare it (single segment, window = one cluster); a decoder allocates the window, so a hostile
 * frame must not choose it. zstd's own levels 1..19 never exceed 8 MiB.
 */
const ZSTD_MAX_WINDOW_BYTES = 8 * 1024 * 1024 // 8 MiB

interface ZstdFrame {
  /** Bytes of the frame in the input, header to checksum. */
  frameBytes: number
  /** Frame_Content_Size when the header has it. */
  contentBytes: number | undefined
}

/**
 * Walks one frame's header and block headers (RFC 8878, 3.1.1) to find where it ends, without
 * decoding it: each step moves on by at least 3 bytes, so a hostile frame cannot loop.
 */
function walkZstdFrame (input: Uint8Array, start: number): ZstdFrame {
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength)
  let at = start + 4
  if (at + 1 > input.length) throw new Error('zstd frame header truncated')
  const descriptor = view.getUint8(at++)
  const fcsFlag = descriptor >> 6
  const singleSegment = (descriptor & 0x20) !== 0
  const checksum = (descriptor & 0x04) !== 0
  const dictionaryFlag = descriptor & 0x03
  if ((descriptor & 0x08) !== 0) throw new Error('zstd frame header reserved bit set')
  let windowBytes = 0
  if (!singleSegment) {
    if (at + 1 > input.length) throw new Error('zstd frame header truncated')
    const windowDescriptor = view.getUint8(at++)
    const base = 2 ** (10 + (windowDescriptor >> 3))
    windowBytes = base + (base / 8) * (windowDescriptor & 7)
  }
  const dictionaryBytes = [0, 1, 2, 4][dictionaryFlag] ?? 0
  const fcsBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : 2 ** fcsFlag
  if (at + dictionaryBytes + fcsBytes > input.length) throw new Error('zstd frame header truncated')
  let dictionary = 0
  for (let i = 0; i < dictionaryBytes; i++) dictionary += view.getUint8(at + i) * 2 ** (8 * i)
  if (dictionary !== 0) throw new Error('zstd frame needs a dictionary')
  at += dictionaryBytes
  let contentBytes: number | undefined
  if (fcsBytes > 0) {
    contentBytes = 0
    for (let i = 0; i < fcsBytes; i++) contentBytes += view.getUint8(at + i) * 2 ** (8 * i)
    if (fcsBytes === 2) contentBytes += 256
    at += fcsBytes
  }
  if (singleSegment) windowBytes = contentBytes ?? 0
  if (windowBytes > ZSTD_MAX_WINDOW_BYTES) throw new Error(`zstd window of ${windowBytes} bytes`)
  const maxBlockBytes = Math.min(windowBytes, ZSTD_MAX_BLOCK_BYTES)
  for (;;) {
    if (at + 3 > input.length) throw new Error('zstd block header truncated')
    const header = view.getUint8(at) | (view.getUint8(at + 1) << 8) | (view.getUint8(at + 2) << 16)
    at += 3
    const last = (header & 1) === 1
    const type = (header >> 1) & 3
    const size = header >>> 3
    if (type === 3) throw new Error('zstd reserved block type')
    if (size > maxBlockBytes) throw new Error(`zstd block of ${size} bytes in a ${windowBytes}-byte window`)
    at += type === 1 ? 1 : size // an RLE block carries one byte
    if (at > input.length) throw new Error('zstd block truncated')
    if (last) break
  }
  if (checksum) at += 4
  if (at > input.length) throw new Error('zstd checksum truncated')
  return { frameBytes: at - start, contentBytes }
}

/**
 * Zstandard (compression_type 1): one or more frames with no length prefix, decoded until
 * exactly `output.length` bytes (one cluster) came out, as qemu's ZSTD_decompressStream loop does.
 * A frame that declares a non-zero size (qemu's always do) is decoded whole into a buffer of that
 * size, which the decoder cannot grow; any other streams block by block (at most 128 KiB each) and
 * is refused as soon as it passes its declared size or the cluster. Content checksums are skipped,
 * not verified.
 */
export function zstdDecompressCluster (input: Uint8Array, output: Uint8Array): void {
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength)
  let at = 0
  let produced = 0
  while (produced < output.length) {
    if (at + 4 > input.length) throw new Error(`zstd data ended after ${produced} of ${output.length} bytes`)
    const magic = view.getUint32(at, true)
    if ((magic & ZSTD_SKIPPABLE_MASK) >>> 0 === ZSTD_SKIPPABLE_MAGIC) {
      if (at + 8 > input.length) throw new Error('zstd skippable frame truncated')
      at += 8 + view.getUint32(at + 4, true)
      continue
    }
    if (magic !== ZSTD_MAGIC) throw new Error('no zstd frame magic')
    const frame = walkZstdFrame(input, at)
    const bytes = input.subarray(at, at + frame.frameBytes)
    at += frame.frameBytes
    const room = Math.min(output.length - produced, frame.contentBytes ?? Infinity)
    if (frame.contentBytes !== undefined && frame.contentBytes > room) throw new Error(`zstd frame of ${frame.contentBytes} bytes overflows the cluster`)
    if (frame.contentBytes !== undefined && frame.contentBytes > 0) {
      // fzstd decodes a sized frame into a buffer of its own 3-4x faster than into ours: copy.
      const decoded = zstdDecompress(bytes)
      if (decoded.length !== frame.contentBytes) throw new Error(`zstd frame gave ${decoded.length} bytes instead of ${frame.contentBytes}`)
      output.set(decoded, produced)
      produced += decoded.length
      continue
    }
    const frameStart = produced
    const stream = new ZstdStream((chunk) => {
      if (chunk.length > room - (produced - frameStart)) throw new Error('zstd frame overflows the cluster')
      output.set(chunk, produced)
      produced += chunk.length
    })
    stream.push(bytes, true)
    if (frame.contentBytes !== undefined && produced - frameStart !== frame.contentBytes) throw new Error('zstd frame does not match its size')
  }
}
