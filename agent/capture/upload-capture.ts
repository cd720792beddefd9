import { createHash, type Hash } from 'node:crypto'
import { putStream, type PutOptions } from '../upload/http-put.js'
import { uploadMultipart, type MultipartOptions } from '../upload/s3-multipart.js'
import { captureStream, type CapturePlan } from './capture-qcow2.js'

export interface UploadedCapture {
  /** Bytes uploaded: the image file's size. */
  bytes: number
  /** The digest of the bytes as uploaded by the attempt that succeeded. */
  digestHex: string
  attempts: number
  /** S3 multipart: the parts, and the requests sent again after a failure. */
  parts?: number
  retries?: number
}

export type CapturePut = Omit<PutOptions, 'body' | 'contentLength'>

/**
 * An image uploaded with one PUT, `source()` called again by each attempt (a new pass over the
 * disk); the digest is over the bytes of the attempt the server took. `contentLength` undefined:
 * sent chunked (a compressed stream's length is known only at its end).
 */
export async function uploadHashed (
  source: () => AsyncIterable<Buffer>, contentLength: number | undefined, put: CapturePut, digestType: 'sha256' | 'sha512',
  onProgress?: (bytes: number) => void,
): Promise<UploadedCapture> {
  let hash: Hash | undefined
  let bytes = 0
  const body = async function * (): AsyncGenerator<Buffer> {
    hash = createHash(digestType)
    bytes = 0
    for await (const chunk of source()) {
      hash.update(chunk)
      bytes += chunk.length
      onProgress?.(bytes)
      yield chunk
    }
  }
  const { attempts } = await putStream({ ...put, contentLength, body })
  if (hash === undefined || (contentLength !== undefined && bytes !== contentLength)) {
    throw new Error(`the upload sent ${bytes} of ${contentLength ?? '?'} bytes`)
  }
  return { bytes, digestHex: hash.digest('hex'), attempts }
}

export type CaptureMultipart = Omit<MultipartOptions, 'body'>

/**
 * An image uploaded to S3 in parts, `source` read once: the digest is over the bytes as produced,
 * which are the bytes uploaded (a part sent again is sent from memory, the same bytes).
 * `contentLength`, when known, is checked against the bytes produced.
 */
export async function uploadHashedMultipart (
  source: AsyncIterable<Buffer>, contentLength: number | undefined, multipart: CaptureMultipart, digestType: 'sha256' | 'sha512',
  onProgress?: (bytes: number) => void,
): Promise<UploadedCapture> {
  const hash = createHash(digestType)
  let bytes = 0
  const body = async function * (): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      hash.update(chunk)
      bytes += chunk.length
      onProgress?.(bytes)
      yield chunk
    }
  }
  const result = await uploadMultipart({ ...multipart, body: body() })
  if (result.bytes !== bytes || (contentLength !== undefined && bytes !== contentLength)) {
    throw new Error(`the upload sent ${result.bytes} of ${contentLength ?? bytes} bytes`)
  }
  return { bytes, digestHex: hash.digest('hex'), attempts: 1, parts: result.parts, retries: result.retries }
}

/** The planned qcow2 capture uploaded, its length announced. */
export async function uploadCapture (
  plan: CapturePlan, put: CapturePut, digestType: 'sha256' | 'sha512' = 'sha512', onProgress?: (bytes: number) => void,
): Promise<UploadedCapture> {
  return await uploadHashed(() => captureStream(plan), plan.layout.fileBytes, put, digestType, onProgress)
}
