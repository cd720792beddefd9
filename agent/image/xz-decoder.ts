/**
 * xz (the .xz file format), decoded by xz-decompress: xz-embedded compiled to WebAssembly behind a
 * web ReadableStream (no native code; 0.6-0.8x the speed of `xz -d`: 27-66 MiB/s on 256 MiB images
 * here). It is built with XZ_DEC_CONCATENATED, so streams one after the other and stream padding
 * decode as `xz -d` does, and the end is only accepted once the input is over (a stream cut short,
 * or bytes after the last stream, fail). CRC32 and CRC64 checks are verified; a SHA-256 check, the BCJ and delta filters
 * and a dictionary over 64 MiB are refused (rare for disk images: xz(1) writes CRC64, no filter, and
 * at most -9's 64 MiB dictionary by default).
 *
 * The library pulls its input from a ReadableStream this decoder feeds, one pushed slab at a time:
 * it reads the next only once done with the last, which is when that slab's push resolves (the
 * download reuses it then). Its output (64 KiB pieces) is gathered into larger ones, each awaited
 * before the library is asked for more, so a slow disk holds the input back.
 */
import xzDecompress from 'xz-decompress'
import { CompressedImageError, OUTPUT_CHUNK_BYTES, TRUNCATED, undecodable, type DecodedOutput, type StreamDecoder } from './decoder-contract.js'

export function createXzDecoder (output: DecodedOutput): StreamDecoder {
  return new XzDecoder(output)
}

/** A pushed slab on its way to the library, and what lets its push resolve. */
interface Input {
  data: Uint8Array
  taken: () => void
}

class XzDecoder implements StreamDecoder {
  readonly compression = 'xz'
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>
  private readonly pumping: Promise<void>
  /** A slab pushed before the library asked for it. */
  private pending: Input | undefined
  /** The library's read, waiting for a slab (or for the end: null). */
  private asking: ((input: Input | null) => void) | undefined
  /** The slab the library holds: let go of when it asks for the next. */
  private held: Input | undefined
  private ended = false
  private pieces: Uint8Array[] = []
  private pieceBytes = 0
  private failure: unknown
  private failed = false

  constructor (private readonly output: DecodedOutput) {
    const input = new ReadableStream<Uint8Array>({ pull: async (controller) => { await this.supply(controller) } }, { highWaterMark: 0 })
    this.reader = new xzDecompress.XzReadableStream(input).getReader()
    this.pumping = this.pump().catch((err: unknown) => {
      this.fail(err)
      throw this.failure
    })
    // Seen through push and end; a decoder abandoned after a failure elsewhere must not leave it unhandled.
    this.pumping.catch(() => {})
  }

  async push (data: Uint8Array): Promise<void> {
    this.throwIfFailed()
    if (data.length === 0) return
    const taken = new Promise<void>((resolve) => { this.give({ data, taken: resolve }) })
    await Promise.race([taken, this.pumping.then(() => { throw new Error('the output ended before the input') })])
      .catch((err: unknown) => { this.fail(err) })
    this.throwIfFailed()
  }

  async end (): Promise<void> {
    this.throwIfFailed()
    this.ended = true
    this.asking?.(null)
    this.asking = undefined
    await this.pumping.catch(() => {})
    this.throwIfFailed()
  }

  destroy (): void {
    this.fail(new Error('the xz decoder was destroyed'))
  }

  /** The library's output, gathered into pieces of OUTPUT_CHUNK_BYTES, each awaited. */
  private async pump (): Promise<void> {
    for (;;) {
      const { done, value } = await this.reader.read().catch((err: unknown) => { throw xzFailure(err) })
      if (done) break
      this.pieces.push(value)
      this.pieceBytes += value.length
      if (this.pieceBytes >= OUTPUT_CHUNK_BYTES) await this.flush()
    }
    await this.flush()
  }

  private async flush (): Promise<void> {
    // Destroyed (or failed elsewhere): the read that ended the loop was the cancel's, not the stream's end.
    if (this.pieceBytes === 0 || this.failed) return
    const piece = Buffer.concat(this.pieces, this.pieceBytes)
    this.pieces = []
    this.pieceBytes = 0
    await this.output(piece, () => {}) // a new piece each time (Buffer.concat): not reused
  }

  /** The library asks for input: it is done with the slab it held; the next one, or the end. */
  private async supply (controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    this.held?.taken()
    this.held = undefined
    const next = this.pending ?? (this.ended ? null : await new Promise<Input | null>((resolve) => { this.asking = resolve }))
    this.pending = undefined
    if (next === null) {
      controller.close()
      return
    }
    this.held = next
    controller.enqueue(next.data)
  }

  private give (input: Input): void {
    if (this.asking === undefined) {
      this.pending = input
      return
    }
    this.asking(input)
    this.asking = undefined
  }

  private fail (err: unknown): void {
    if (this.failed) return
    this.failed = true
    this.failure = err
    // Frees the library's context (and its lock: it decodes one stream at a time, the others wait).
    this.reader.cancel().catch(() => {})
  }

  private throwIfFailed (): void {
    if (this.failed) throw this.failure
  }
}

/**
 * xz-embedded's return codes (enum xz_ret in xz.h), which the library gives only as a number in
 * its message, in the result's words.
 */
const XZ_REASONS: Readonly<Record<number, string>> = {
  2: undecodable('its integrity check is of a type this decoder does not verify'), // XZ_UNSUPPORTED_CHECK
  3: undecodable('out of memory'), // XZ_MEM_ERROR
  4: undecodable('its dictionary is larger than 64 MiB'), // XZ_MEMLIMIT_ERROR
  5: undecodable('no xz stream header where one must start: corrupt, or bytes after its last stream'), // XZ_FORMAT_ERROR
  // xz-embedded here verifies CRC32 and CRC64 only: a SHA-256 check is refused as an option, not as XZ_UNSUPPORTED_CHECK.
  6: undecodable('it uses an option this decoder lacks: a SHA-256 check, or a BCJ or delta filter'), // XZ_OPTIONS_ERROR
  7: undecodable('corrupt data, or a check that does not match'), // XZ_DATA_ERROR
  8: TRUNCATED, // XZ_BUF_ERROR: no progress possible, at the end of the input only
}

function xzFailure (err: unknown): unknown {
  const code = err instanceof Error ? /error code (\d+)/.exec(err.message)?.[1] : undefined
  if (code === undefined) return err
  return new CompressedImageError('xz', XZ_REASONS[Number(code)] ?? undecodable(`xz-embedded error ${code}`), { cause: err })
}
