import { createHash, type Hash } from 'node:crypto'
import { putStream, type PutOptions } from '../upload/http-put.js'
import { captureStream, type CapturePlan } from './capture-qcow2.js'

export interface UploadedCapture {
  /** Bytes uploaded: the qcow2 file's size. */
  bytes: number
  /** The digest of the bytes as uploaded by the attempt that succeeded. */
  digestHex: string
  attempts: number
}

/**
 * The planned capture uploaded with one PUT, the second pass over the disk made by each attempt;
 * the digest is over the bytes of the attempt that the server took.
 */
export async function uploadCapture (
  plan: CapturePlan, put: Omit<PutOptions, 'body' | 'contentLength'>, digestType: 'sha256' | 'sha512' = 'sha512',
): Promise<UploadedCapture> {
  let hash: Hash | undefined
  let bytes = 0
  const body = async function * (): AsyncGenerator<Buffer> {
    hash = createHash(digestType)
    bytes = 0
    for await (const chunk of captureStream(plan)) {
      hash.update(chunk)
      bytes += chunk.length
      yield chunk
    }
  }
  const { attempts } = await putStream({ ...put, contentLength: plan.layout.fileBytes, body })
  if (hash === undefined || bytes !== plan.layout.fileBytes) throw new Error(`the upload sent ${bytes} of ${plan.layout.fileBytes} bytes`)
  return { bytes, digestHex: hash.digest('hex'), attempts }
}
