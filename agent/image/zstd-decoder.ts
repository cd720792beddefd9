/**
 * zstd (RFC 8878), decoded by the zstd library itself through zstd-napi's binding (a native
 * addon: about 3x the speed of fzstd, the pure-JS decoder the qcow2 reader uses, here). Its own DecompressStream is not used: it
 * pushes all of one input chunk's output at once, so a 2 MiB slab of a bomb could fill memory.
 * Here each ZSTD_decompressStream call fills at most one output piece, awaited before the next.
 *
 * Frames one after the other (`zstd` of a pipe, files joined with cat) decode as one stream, and
 * skippable frames are skipped, as `zstd -d` does. A frame's content checksum, when it has one
 * (zstd(1) writes it by default), is checked by the library: a mismatch fails.
 */
import zstd from 'zstd-napi/binding.js'
import { CompressedImageError, OUTPUT_CHUNK_BYTES, TRUNCATED, undecodable, type DecodedOutput, type StreamDecoder } from './decoder-contract.js'

export function createZstdDecoder (output: DecodedOutput): StreamDecoder {
  return new ZstdDecoder(output)
}

/**
 * Output pieces given back and kept for reuse, at most: the stream stage's writes in flight and the
 * one being filled. A fresh MiB per piece costs as much as the decoding (page faults, and memory
 * returned to the kernel and taken back): 256 MiB images decoded at 330-570 MiB/s that way, at
 * 780-1080 MiB/s with pieces given back (`zstd -d`: 1200-2000 MiB/s) on the 2-core build machine.
 */
const SPARE_PIECES = 6

/** The library's default window limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT, 2^27): larger windows need `--long` on both sides. */
const WINDOW_LIMIT = '128 MiB'

class ZstdDecoder implements StreamDecoder {
  readonly compression = 'zstd'
  private readonly context = new zstd.DCtx()
  /** Within a frame (its end not decoded, or decoded but not all handed on): a stream that stops here is cut short. */
  private inFrame = false
  /** Frames decoded whole: bytes after the last one that are not a frame are trailing garbage. */
  private frames = 0
  /** The last piece was filled: the context may hold more output, even with no input left. */
  private outputPending = false
  private failure: unknown
  private failed = false
  private destroyed = false
  private readonly spare: Buffer[] = []

  constructor (private readonly output: DecodedOutput) {}

  async push (input: Uint8Array): Promise<void> {
    this.throwIfUnusable()
    try {
      await this.decode(input)
    } catch (err) {
      this.fail(err)
    }
    this.throwIfUnusable()
  }

  async end (): Promise<void> {
    await this.push(new Uint8Array(0))
    if (this.inFrame) this.fail(new CompressedImageError('zstd', TRUNCATED))
    this.throwIfUnusable()
  }

  destroy (): void {
    // The context's memory goes with it (zstd-napi frees it when collected).
    this.destroyed = true
  }

  /** `input` decoded whole (the context keeps no reference to it), each output piece awaited. */
  private async decode (input: Uint8Array): Promise<void> {
    let rest = input
    while ((rest.length > 0 || this.outputPending) && !this.destroyed) {
      const piece = this.spare.pop() ?? Buffer.allocUnsafe(OUTPUT_CHUNK_BYTES)
      const [toFlush, produced, consumed] = this.step(piece, rest)
      if (produced === 0) this.spare.push(piece)
      if (produced === 0 && consumed === 0) {
        // No input left and nothing more inside (the last piece was filled exactly); with input left, a bug.
        if (rest.length > 0) throw new Error('the zstd decoder made no progress')
        this.outputPending = false
        break
      }
      rest = rest.subarray(consumed)
      // 0: a frame decoded and flushed whole; anything else: more of the frame, or of its output, to come.
      this.inFrame = toFlush !== 0
      if (toFlush === 0) this.frames++
      this.outputPending = produced === piece.length
      if (produced > 0) await this.output(piece.subarray(0, produced), this.giveBack(piece))
    }
  }

  /** What lets the consumer give `piece` back, once. */
  private giveBack (piece: Buffer): () => void {
    let given = false
    return () => {
      if (given) return
      given = true
      if (this.spare.length < SPARE_PIECES) this.spare.push(piece)
    }
  }

  /** One ZSTD_decompressStream call, its failure in the result's words. */
  private step (piece: Buffer, input: Uint8Array): [toFlush: number, produced: number, consumed: number] {
    try {
      return this.context.decompressStream(piece, input)
    } catch (err) {
      throw new CompressedImageError('zstd', zstdReason(err, !this.inFrame && this.frames > 0), { cause: err })
    }
  }

  private fail (err: unknown): void {
    if (this.failed) return
    this.failed = true
    this.failure = err
  }

  private throwIfUnusable (): void {
    if (this.failed) throw this.failure
    if (this.destroyed) throw new Error('the zstd decoder was destroyed')
  }
}

/** zstd's error names (ZSTD_getErrorName) are readable; two get the likely cause said. */
function zstdReason (err: unknown, afterFrame: boolean): string {
  const name = err instanceof Error ? err.message : String(err)
  if (afterFrame && name === 'Unknown frame descriptor') return undecodable('bytes after its last frame are not a zstd frame')
  if (name === 'Frame requires too much memory for decoding') return undecodable(`its window is larger than ${WINDOW_LIMIT}: ${name}`)
  return undecodable(name)
}
