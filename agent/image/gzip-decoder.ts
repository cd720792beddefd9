/**
 * gzip (RFC 1952), decoded by Node's zlib on libuv's thread pool. Several members one after the
 * other decode as one stream, as `gzip -d` does.
 */
import { createGunzip, constants as zlibConstants, type Gunzip } from 'node:zlib'
import { CompressedImageError, OUTPUT_CHUNK_BYTES, TRUNCATED, undecodable, type DecodedOutput, type StreamDecoder } from './decoder-contract.js'

export function createGzipDecoder (output: DecodedOutput): StreamDecoder {
  return new GunzipDecoder(createGunzip({ chunkSize: OUTPUT_CHUNK_BYTES }), output)
}

/**
 * A decoder over zlib's transform stream: input written with backpressure, output read by one loop
 * that awaits each piece's consumer.
 */
class GunzipDecoder implements StreamDecoder {
  readonly compression = 'gzip'
  private readonly pumping: Promise<void>
  private failure: unknown
  private failed = false

  constructor (private readonly stream: Gunzip, output: DecodedOutput) {
    this.pumping = (async () => {
      for await (const chunk of stream as AsyncIterable<Buffer>) await output(chunk, () => {}) // zlib's own pieces: not reused
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
    this.failure = err instanceof CompressedImageError || !isZlibError(err) ? err : new CompressedImageError('gzip', zlibReason(err), { cause: err })
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
  if (err.errno === zlibConstants.Z_BUF_ERROR) return TRUNCATED
  return undecodable(err.message)
}
