/**
 * Compressed raw images (`imageType: raw` whose bytes are gzip, zstd or xz), decoded while they
 * stream: recognised by their magic number, as coreos-installer, ironic-python-agent and
 * Tinkerbell's image2disk recognise them. The customer's checksum is over the bytes as downloaded;
 * the decoded bytes are the image that goes to the disk.
 *
 * A decoder takes the compressed bytes in order and hands its output on in order, each piece awaited
 * (backpressure: a slow disk slows the decoding, which slows the download). A stream that ends
 * before its end mark, or holds bytes that cannot be decoded, fails with a CompressedImageError.
 * Each format has its module (gzip-decoder, zstd-decoder, xz-decoder); the contract they keep is
 * decoder-contract's.
 */
import type { DecodedOutput, StreamCompression, StreamDecoder } from './decoder-contract.js'
import { createGzipDecoder } from './gzip-decoder.js'

export { CompressedImageError, type DecodedOutput, type StreamCompression, type StreamDecoder } from './decoder-contract.js'

/** A format's first bytes: `bytes`, compared under `mask` where one is given. */
const MAGICS: ReadonlyArray<{ compression: StreamCompression; bytes: readonly number[]; mask?: readonly number[] }> = [
  { compression: 'gzip', bytes: [0x1f, 0x8b, 0x08] }, // RFC 1952 ID1 ID2, CM = 8 (deflate): the only method defined
  { compression: 'zstd', bytes: [0x28, 0xb5, 0x2f, 0xfd] }, // RFC 8878 3.1.1: 0xFD2FB528 little-endian
  // RFC 8878 3.1.2: a skippable frame (0x184D2A50..5F) may come first, as pzstd writes one before each frame.
  { compression: 'zstd', bytes: [0x50, 0x2a, 0x4d, 0x18], mask: [0xf0, 0xff, 0xff, 0xff] },
  { compression: 'xz', bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] }, // xz file format 2.1.1.1
]

/** Bytes a stream's start must have for detectCompression to tell. */
export const MAGIC_BYTES = 6

/** The compression a stream starting with `head` uses, or undefined for anything else (a raw image). */
export function detectCompression (head: Uint8Array): StreamCompression | undefined {
  return MAGICS.find(({ bytes, mask }) => bytes.every((byte, i) => head[i] !== undefined && (head[i] & (mask?.[i] ?? 0xff)) === byte))?.compression
}

type DecoderFactory = (output: DecodedOutput) => StreamDecoder

/**
 * zstd's native addon and xz's WebAssembly are loaded with their first image, not with the agent:
 * they would cost every install (and `--help`) about 9 MiB of memory and their start-up. gzip is
 * Node's own zlib.
 */
const DECODERS: Readonly<Record<StreamCompression, DecoderFactory>> = {
  gzip: createGzipDecoder,
  zstd: (output) => new LazyDecoder('zstd', output, async () => (await import('./zstd-decoder.js')).createZstdDecoder),
  xz: (output) => new LazyDecoder('xz', output, async () => (await import('./xz-decoder.js')).createXzDecoder),
}

/** A decoder whose module is imported at its first push (or end). */
class LazyDecoder implements StreamDecoder {
  private decoder: Promise<StreamDecoder> | undefined
  private destroyed = false

  constructor (readonly compression: StreamCompression, private readonly output: DecodedOutput, private readonly load: () => Promise<DecoderFactory>) {}

  async push (input: Uint8Array): Promise<void> {
    await (await this.loaded()).push(input)
  }

  async end (): Promise<void> {
    await (await this.loaded()).end()
  }

  destroy (): void {
    this.destroyed = true
    void this.decoder?.then((decoder) => { decoder.destroy() }, () => {})
  }

  private async loaded (): Promise<StreamDecoder> {
    this.decoder ??= this.load().then((create) => {
      const decoder = create(this.output)
      // Destroyed while its module loaded: it never hands anything on.
      if (this.destroyed) decoder.destroy()
      return decoder
    })
    return await this.decoder
  }
}

export function createDecoder (compression: StreamCompression, output: DecodedOutput): StreamDecoder {
  return DECODERS[compression](output)
}
