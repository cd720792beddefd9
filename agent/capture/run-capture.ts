import type { Logger } from 'pino'
import { Disk } from '../disk/disk.js'
import { errors, isInstallError } from '../errors/install-error.js'
import { capturedMessage } from '../errors/installed-message.js'
import type { InstallEventListener, StepName } from '../report/progress.js'
import { safeUrl } from '../report/redact.js'
import { s3ObjectUrl, type S3Target } from '../upload/s3-multipart.js'
import { captureStream, planCapture } from './capture-qcow2.js'
import { CaptureSource } from './capture-source.js'
import { findFreeSpace } from './free-space.js'
import { gzipCompress, rawCaptureStream, zstdCompress } from './raw-capture.js'
import { uploadHashed, uploadHashedMultipart, type UploadedCapture } from './upload-capture.js'

/**
 * `byoi-agent capture` and the service's capture job: the disk opened read only (refused in use),
 * scanned, and uploaded with one PUT, as a sparse qcow2 or a raw image (zstd-compressed when
 * asked); the result gives what is needed to install it elsewhere as it is: its size, its digest,
 * and the install payload in both of OVH's shapes (install/start's userMetadata, and reinstall's
 * customizations). The URL in the payload is the upload's as given, credentials and secret query
 * parameters redacted (a presigned PUT URL is not one to download from: the customer puts the GET
 * URL in its place); the headers the upload was sent with are not put in it.
 *
 * With `s3` instead of `uploadUrl`, the image goes to an S3 bucket with the multipart API (any size;
 * a single PUT is capped at 5 GiB), the disk read once; the payload's URL is the object's, without
 * credentials, and a note says a presigned GET URL (or a public-read object) is needed to install
 * from it.
 *
 * Steps, told as an install's are (report/progress): preflight (the disk opened, its free space
 * found), scan (a qcow2's first pass; nothing for raw), upload (the second pass, hashed as sent),
 * finish (the disk's size checked again). Every failure is an InstallError: a read that fails or
 * a disk that changed size CAPTURE_READ_FAILED, a cancel CAPTURE_CANCELLED, the unexpected
 * CAPTURE_INTERNAL_ERROR.
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
  /** qcow2: its clusters compressed (zlib: QEMU's deflate); raw: one zstd frame (.raw.zst) or gzip (zlib: .raw.gz). */
  compress?: 'zstd' | 'zlib' | 'none'
  headers: Array<{ name: string; value: string }>
  checksumType: 'sha256' | 'sha512'
  signal?: AbortSignal
  logger?: Logger
  /** Tests: the upload's retry delay. */
  retryBaseDelayMs?: number
  /** Tests: S3's part size (default: from the image's size, 8 MiB at least) and parts in flight. */
  s3PartBytes?: number
  s3PartsInFlight?: number
  /** Step changes, bytes scanned and uploaded (with their totals; undefined for a compressed stream's), notes. */
  onEvent?: InstallEventListener
}

export interface CaptureOutcome {
  code: 'CAPTURED'
  message: string
  bytes: number
  digest: { type: 'sha256' | 'sha512'; hex: string }
  /** What was uploaded: qcow2, raw, or zstd-compressed raw. */
  format: string
  virtualSizeBytes: number
  notes: string[]
  payloads: CapturePayloads
}

export interface CapturePayloads {
  installStart: { templateName: 'byoi_64'; userMetadata: Array<{ key: string; value: string }> }
  reinstall: { operatingSystem: 'byoi_64'; customizations: Record<string, string> }
}

export async function runCapture (request: CaptureRequest): Promise<CaptureOutcome> {
  let step: StepName | undefined
  const tell = (next: StepName | undefined): void => {
    const at = new Date().toISOString()
    if (step !== undefined) request.onEvent?.({ type: 'step', step, status: 'done', at })
    step = next
    if (next !== undefined) request.onEvent?.({ type: 'step', step: next, status: 'doing', at })
  }
  try {
    tell('preflight')
    if ((request.s3 === undefined) === (request.uploadUrl === undefined)) {
      throw errors.captureUploadFailed(shownUrlOf(request), new Error('expected one of uploadUrl and s3'))
    }
    const disk = await Disk.open(request.diskPath, { readOnly: true })
    try {
      return await capture(request, disk, tell)
    } finally {
      await disk.close()
    }
  } catch (err) {
    if (step !== undefined) request.onEvent?.({ type: 'step', step, status: 'error', at: new Date().toISOString() })
    if (request.signal?.aborted === true) throw errors.captureCancelled()
    if (isInstallError(err)) throw err
    request.logger?.error({ err }, 'capture: unexpected error')
    throw errors.captureInternalError(err)
  }
}

/** The URL the result shows: the S3 object's, or the upload's without credentials. */
function shownUrlOf (request: CaptureRequest): string {
  return request.s3 !== undefined ? s3ObjectUrl(request.s3) : safeUrl(request.uploadUrl ?? '')
}

async function capture (request: CaptureRequest, disk: Disk, tell: (step: StepName | undefined) => void): Promise<CaptureOutcome> {
  const source = new CaptureSource(disk)
  const { s3 } = request
  const progress = (step: 'scan' | 'upload', totalBytes: number | undefined) => (bytes: number): void => {
    request.onEvent?.({ type: 'progress', step, bytes, totalBytes })
  }
  /** The image's bytes: `stream()` read again by each PUT attempt, once by S3's multipart. */
  const upload = async (stream: () => AsyncIterable<Buffer>, length: number | undefined): Promise<UploadedCapture> => {
    const { signal, logger, retryBaseDelayMs } = request
    if (s3 !== undefined) {
      const multipart = {
        target: s3, expectedBytes: length ?? disk.sizeBytes, partBytes: request.s3PartBytes, partsInFlight: request.s3PartsInFlight,
        signal, logger, retryBaseDelayMs,
      }
      return await uploadHashedMultipart(stream(), length, multipart, request.checksumType, progress('upload', length))
    }
    const put = { url: request.uploadUrl ?? '', headers: request.headers, signal, logger, retryBaseDelayMs }
    return await uploadHashed(stream, length, put, request.checksumType, progress('upload', length))
  }
  let uploaded: UploadedCapture
  let notes: string[]
  let format: string
  if (request.format === 'raw') {
    const free = await findFreeSpace(source)
    // zstd: one zstd frame (.raw.zst); zlib: gzip (.raw.gz); both streamable, installable as imageType raw.
    const codec = request.compress === 'zstd' ? 'zstd' : request.compress === 'zlib' ? 'gzip' : undefined
    request.logger?.info({ disk: disk.path, sizeBytes: disk.sizeBytes, notes: free.notes, codec }, 'capture: uploading the raw disk')
    tell('scan')
    tell('upload')
    const stream = (): AsyncIterable<Buffer> => {
      const raw = rawCaptureStream(source, free)
      return codec === 'zstd' ? zstdCompress(raw, disk.sizeBytes) : codec === 'gzip' ? gzipCompress(raw) : raw
    }
    uploaded = await upload(stream, codec === undefined ? disk.sizeBytes : undefined)
    format = codec === undefined ? 'raw' : `${codec}-compressed raw`
    notes = [...free.notes, codec === undefined ? 'raw' : `raw, ${codec}-compressed: ${disk.sizeBytes} bytes in ${uploaded.bytes}`]
  } else {
    request.logger?.info({ disk: disk.path, sizeBytes: disk.sizeBytes }, 'capture: scanning the disk')
    tell('scan')
    const onScan = progress('scan', disk.sizeBytes)
    const compression = request.compress === 'zstd' ? 'zstd' : request.compress === 'zlib' ? 'deflate' : undefined
    const plan = await planCapture(source, { signal: request.signal, onProgress: (p) => { onScan(p.bytes) }, compression, diskName: disk.path })
    request.logger?.info({ fileBytes: plan.layout.fileBytes, notes: plan.notes }, 'capture: uploading')
    tell('upload')
    uploaded = await upload(() => captureStream(plan), plan.layout.fileBytes)
    format = request.compress === 'zstd' || request.compress === 'zlib' ? `${request.compress}-compressed qcow2` : 'qcow2'
    notes = plan.notes
  }
  tell('finish')
  await source.checkUnchanged()
  if (s3 !== undefined) {
    notes.push(`S3 multipart: ${uploaded.parts ?? 0} parts${(uploaded.retries ?? 0) > 0 ? `, requests sent again: ${uploaded.retries ?? 0}` : ''}`)
    notes.push('imageURL is the S3 object\'s URL, without credentials: installing from it needs a presigned GET URL in its place (or a public-read object)')
  } else if (uploaded.attempts > 1) notes.push(`uploaded on attempt ${uploaded.attempts}`)
  for (const message of notes) request.onEvent?.({ type: 'note', message })
  tell(undefined)
  const shownUrl = shownUrlOf(request)
  const imageType = request.format === 'raw' ? 'raw' : 'qcow2'
  const description = { imageURL: shownUrl, imageType, imageCheckSum: uploaded.digestHex, imageCheckSumType: request.checksumType }
  return {
    code: 'CAPTURED',
    message: capturedMessage({
      diskPath: disk.path, safeUrl: shownUrl, bytes: uploaded.bytes, format, checksumType: request.checksumType, digestHex: uploaded.digestHex,
    }),
    bytes: uploaded.bytes,
    digest: { type: request.checksumType, hex: uploaded.digestHex },
    format,
    virtualSizeBytes: disk.sizeBytes,
    notes,
    payloads: {
      installStart: { templateName: 'byoi_64', userMetadata: Object.entries(description).map(([key, value]) => ({ key, value })) },
      reinstall: { operatingSystem: 'byoi_64', customizations: description },
    },
  }
}
