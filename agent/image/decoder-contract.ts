/**
 * What every decoder of a compressed raw image (gzip-decoder, zstd-decoder, xz-decoder) promises,
 * apart from stream-decoder (which picks one by the file's magic) so that the decoders and the
 * picker do not import each other.
 */

export type StreamCompression = 'gzip' | 'zstd' | 'xz'

/**
 * Output pieces of a decoder: each is the consumer's, free to keep, until it calls `release` (once,
 * when done with it: the decoder may then reuse its memory, sparing the allocator and the kernel a
 * fresh MiB per piece). Not calling it is fine: the piece is then garbage like any other.
 */
export type DecodedOutput = (data: Buffer, release: () => void) => Promise<void>

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

/** The reason of a stream cut short, the same words whatever the compression. */
export const TRUNCATED = 'it ends before its end mark (truncated)'

/** The reason of bytes a decoder refuses: `detail` in the decoder's (or its library's) words. */
export const undecodable = (detail: string): string => `it cannot be decoded (${detail})`

/** Output pieces of about this size (fewer, larger writes). */
export const OUTPUT_CHUNK_BYTES = 1024 * 1024
