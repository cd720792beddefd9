/**
 * Compressed raw images (`imageType: raw` whose bytes are gzip, zstd or xz), decoded while they
 * stream: recognised by their magic number, as coreos-installer, ironic-python-agent and
 * Tinkerbell's image2disk recognise them. The customer's checksum is over the bytes as downloaded;
 * the decoded bytes are the image that goes to the disk.
 *
 * A decoder takes the compressed bytes in order and hands its output on in order, each piece awaited
 * (backpressure: a slow disk slows the decoding, which slows the download). A stream that ends
 * before its end mark, or holds bytes that cannot be decoded, fails with a CompressedImageError.
 */
import { createGunzip, constants as zlibConstants, type Gunzip } from 'node:zlib'

export type StreamCompression = 'gzip' | 'zstd' | 'xz'

/** Output pieces of a decoder: each is the decoder's own, free to keep. */
export type DecodedOutput = (data: Buffer) => Promise<void>

export interface StreamDecoder {
  readonly compression: StreamCompression
  /** Decodes `input` (its bytes are not used once this resolves), handing the output on. */
  push (input: Uint8Array): Promise<void>
  /** The input is over: the last output handed on; a stream cut short fails here. */
  end (): Promise<void>
  /** Stops decoding (after a failure elsewhere, or a restart): no more output is handed on. */
  destroy (): void
}

/** The compressed stream cannot be decoded: corrupt, cut short, or of an unsupported kind. */
export class CompressedImageError extends Error {
  constructor (readonly compression: StreamCompression, readonly reason: string, options?: { cause?: unknown }) {
    super(`${compression} stream: ${reason}`, options)
    this.name = 'CompressedImageError'
  }
}

// zstd (RFC 8878 3.1.1: 0xFD2FB528 little-endian) and xz (xz file format 2.1.1.1: FD 37 7A 58 5A 00) join
// this list with their decoders; until then such files are refused as raw images without a partition table.
const MAGICS: ReadonlyArray<{ compression: StreamCompression; bytes: readonly number[] }> = [
  { compression: 'gzip', bytes: [0x1f, 0x8b, 0x08] }, // RFC 1952 ID1 ID2, CM = 8 (deflate): the only method defined
]

/** Bytes a stream's start must have for detectCompression to tell. */
export const MAGIC_BYTES = 6

/** The compression a stream starting with `head` uses, or undefined for anything else (a raw image). */
export function detectCompression (head: Uint8Array): StreamCompression | undefined {
  return MAGICS.find(({ bytes }) => bytes.every((byte, i) => head[i] === byte))?.compression
}

/** Output pieces of about this size (fewer, larger writes). */
const OUTPUT_CHUNK_BYTES = 1024 * 1024

export function createDecoder (compression: StreamCompression, output: DecodedOutput): StreamDecoder {
  if (compression === 'gzip') return new NodeStreamDecoder('gzip', createGunzip({ chunkSize: OUTPUT_CHUNK_BYTES }), output)
  throw new CompressedImageError(compression, 'not supported yet')
}

/**
 * A decoder over a Node transform stream (zlib's, decoding on libuv's thread pool): input written
 * with backpressure, output read by one loop that awaits each piece's consumer.
 */
class NodeStreamDecoder implements StreamDecoder {
  private readonly pumping: Promise<void>
  private failure: unknown
  private failed = false

  constructor (readonly compression: StreamCompression, private readonly stream: Gunzip, output: DecodedOutput) {
    this.pumping = (async () => {
      for await (const chunk of stream as AsyncIterable<Buffer>) await output(chunk)
    })().catch((err: unknown) => {
      this.fail(err)
      throw this.failure
    })
    // Seen through push and end; a decoder abandoned after a failure elsewhere must not leave it unhandled.
    this.pumping.catch(() => {})
  }

  async push (input: Uint8Array): Promise<void> {
    this.throwIfFailed()
    if (input.length === 0) return
    // The input's bytes are the download's slab, reused once this resolves: wait until zlib consumed them.
    const written = new Promise<void>((resolve, reject) => {
      this.stream.write(input, (err) => { if (err == null) resolve(); else reject(err) })
    })
    await Promise.race([written, this.pumping.then(() => { throw new Error('the output ended before the input') })])
      .catch((err: unknown) => { this.fail(err) })
    this.throwIfFailed()
  }

  async end (): Promise<void> {
    this.throwIfFailed()
    this.stream.end()
    await this.pumping.catch(() => {})
    this.throwIfFailed()
  }

  destroy (): void {
    this.stream.destroy()
  }

  private fail (err: unknown): void {
    if (this.failed) return
    this.failed = true
    this.failure = err instanceof CompressedImageError || !isZlibError(err) ? err : new CompressedImageError(this.compression, zlibReason(err), { cause: err })
    this.stream.destroy()
  }

  private throwIfFailed (): void {
    if (this.failed) throw this.failure
  }
}

function isZlibError (err: unknown): err is Error & { code: string; errno?: number } {
  const code: unknown = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined
  return typeof code === 'string' && code.startsWith('Z_')
}

function zlibReason (err: Error & { code: string; errno?: number }): string {
  if (err.errno === zlibConstants.Z_BUF_ERROR) return 'it ends before its end mark (truncated)'
  return `it cannot be decoded (${err.message})`
}
