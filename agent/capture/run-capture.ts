import type { Logger } from 'pino'
import { Disk } from '../disk/disk.js'
import { errors } from '../errors/install-error.js'
import { safeUrl } from '../report/redact.js'
import { s3ObjectUrl, type S3Target } from '../upload/s3-multipart.js'
import { captureStream, planCapture } from './capture-qcow2.js'
import { findFreeSpace } from './free-space.js'
import { rawCaptureStream, zstdCompress } from './raw-capture.js'
import { uploadHashed, uploadHashedMultipart, type UploadedCapture } from './upload-capture.js'

/**
 * `byoi-agent capture`: the disk opened read only (refused in use), scanned, and uploaded with one
 * PUT, as a sparse qcow2 or a raw image (zstd-compressed when asked); the result gives what is
 * needed to install it elsewhere as it is: its size, its digest, and the install payload in both
 * of OVH's shapes (install/start's userMetadata, and reinstall's customizations). The URL in the payload is the upload's as given (a presigned PUT
 * URL is not one to download from: the customer puts the GET URL in its place); the headers the
 * upload was sent with are not put in it.
 *
 * With `s3` instead of `uploadUrl`, the image goes to an S3 bucket with the multipart API (any size;
 * a single PUT is capped at 5 GiB), the disk read once; the payload's URL is the object's, without
 * credentials, and a note says a presigned GET URL (or a public-read object) is needed to install
 * from it.
 */

/** A capture's S3 destination: the object and the credentials that may write it (never logged nor shown). */
export type S3CaptureTarget = S3Target

export interface CaptureRequest {
  diskPath: string
  /** One PUT to this URL; or `s3`, exactly one of the two. */
  uploadUrl?: string
  s3?: S3CaptureTarget
  /** qcow2 (default): sparse, tables first. raw: every byte, free space zeroed; with `compress: 'zstd'`, a .raw.zst. */
  format?: 'qcow2' | 'raw'
  compress?: 'zstd' | 'none'
  /** Sent with uploadUrl's PUT ([] with s3: its requests are signed). */
  headers: Array<{ name: string; value: string }>
  checksumType: 'sha256' | 'sha512'
  signal?: AbortSignal
  logger?: Logger
  /** Tests: the upload's retry delay. */
  retryBaseDelayMs?: number
  /** Tests: S3's part size (default: from the image's size, 8 MiB at least) and parts in flight. */
  s3PartBytes?: number
  s3PartsInFlight?: number
  /** Bytes scanned (the first pass, qcow2) and uploaded, with their totals (undefined: a compressed stream's). */
  onProgress?: (step: 'scan' | 'upload', bytes: number, totalBytes: number | undefined) => void
}

export interface CaptureOutcome {
  code: 'CAPTURED'
  message: string
  bytes: number
  digest: { type: 'sha256' | 'sha512'; hex: string }
  virtualSizeBytes: number
  notes: string[]
  payloads: {
    installStart: { templateName: 'byoi_64'; userMetadata: Array<{ key: string; value: string }> }
    reinstall: { operatingSystem: 'byoi_64'; customizations: Record<string, string> }
  }
}

export async function runCapture (request: CaptureRequest): Promise<CaptureOutcome> {
  const { s3 } = request
  const shownUrl = s3 !== undefined ? s3ObjectUrl(s3) : safeUrl(request.uploadUrl ?? '')
  if ((s3 === undefined) === (request.uploadUrl === undefined)) {
    throw errors.captureUploadFailed(shownUrl, new Error('expected one of uploadUrl and s3'))
  }
  const disk = await Disk.open(request.diskPath, { readOnly: true })
  try {
    const uploading = (total: number | undefined) => (bytes: number): void => { request.onProgress?.('upload', bytes, total) }
    /** The image's bytes: `source()` read again by each PUT attempt, once by S3's multipart. */
    const upload = async (source: () => AsyncIterable<Buffer>, length: number | undefined): Promise<UploadedCapture> => {
      const { signal, logger, retryBaseDelayMs } = request
      if (s3 !== undefined) {
        const multipart = {
          target: s3, expectedBytes: length ?? disk.sizeBytes, partBytes: request.s3PartBytes, partsInFlight: request.s3PartsInFlight,
          signal, logger, retryBaseDelayMs,
        }
        return await uploadHashedMultipart(source(), length, multipart, request.checksumType, uploading(length))
      }
      const put = { url: request.uploadUrl ?? '', headers: request.headers, signal, logger, retryBaseDelayMs }
      return await uploadHashed(source, length, put, request.checksumType, uploading(length))
    }
    let uploaded: UploadedCapture
    let notes: string[]
    if (request.format === 'raw') {
      const free = await findFreeSpace(disk)
      const zstdStream = request.compress === 'zstd'
      request.logger?.info({ disk: disk.path, sizeBytes: disk.sizeBytes, notes: free.notes, zstd: zstdStream }, 'capture: uploading the raw disk')
      const source = (): AsyncIterable<Buffer> => zstdStream ? zstdCompress(rawCaptureStream(disk, free), disk.sizeBytes) : rawCaptureStream(disk, free)
      uploaded = await upload(source, zstdStream ? undefined : disk.sizeBytes)
      notes = [...free.notes, zstdStream ? `raw, zstd-compressed: ${disk.sizeBytes} bytes in ${uploaded.bytes}` : 'raw']
    } else {
      request.logger?.info({ disk: disk.path, sizeBytes: disk.sizeBytes }, 'capture: scanning the disk')
      const onScan = (p: { bytes: number; totalBytes: number }): void => { request.onProgress?.('scan', p.bytes, p.totalBytes) }
      const plan = await planCapture(disk, { signal: request.signal, onProgress: onScan })
      request.logger?.info({ fileBytes: plan.layout.fileBytes, notes: plan.notes }, 'capture: uploading')
      uploaded = await upload(() => captureStream(plan), plan.layout.fileBytes)
      notes = plan.notes
    }
    const imageType = request.format === 'raw' ? 'raw' : 'qcow2'
    const description = { imageURL: shownUrl, imageType, imageCheckSum: uploaded.digestHex, imageCheckSumType: request.checksumType }
    const uploadNotes = s3 !== undefined
      ? [
          `S3 multipart: ${uploaded.parts ?? 0} parts${(uploaded.retries ?? 0) > 0 ? `, requests sent again: ${uploaded.retries ?? 0}` : ''}`,
          `imageURL is the S3 object's URL, without credentials: installing from it needs a presigned GET URL in its place (or a public-read object)`,
        ]
      : uploaded.attempts > 1 ? [`uploaded on attempt ${uploaded.attempts}`] : []
    return {
      code: 'CAPTURED',
      message: `Captured ${disk.path} to \`${shownUrl}\`: ${uploaded.bytes} bytes, ${request.checksumType} ${uploaded.digestHex}.`,
      bytes: uploaded.bytes,
      digest: { type: request.checksumType, hex: uploaded.digestHex },
      virtualSizeBytes: disk.sizeBytes,
      notes: [...notes, ...uploadNotes],
      payloads: {
        installStart: { templateName: 'byoi_64', userMetadata: Object.entries(description).map(([key, value]) => ({ key, value })) },
        reinstall: { operatingSystem: 'byoi_64', customizations: description },
      },
    }
  } finally {
    await disk.close()
  }
}
