import type { Logger } from 'pino'
import { Disk } from '../disk/disk.js'
import { safeUrl } from '../report/redact.js'
import { planCapture } from './capture-qcow2.js'
import { findFreeSpace } from './free-space.js'
import { rawCaptureStream, zstdCompress } from './raw-capture.js'
import { uploadCapture, uploadHashed, type UploadedCapture } from './upload-capture.js'

/**
 * `byoi-agent capture`: the disk opened read only (refused in use), scanned, and uploaded with one
 * PUT, as a sparse qcow2 or a raw image (zstd-compressed when asked); the result gives what is
 * needed to install it elsewhere as it is: its size, its digest, and the install payload in both
 * of OVH's shapes (install/start's userMetadata, and reinstall's customizations). The URL in the payload is the upload's as given (a presigned PUT
 * URL is not one to download from: the customer puts the GET URL in its place); the headers the
 * upload was sent with are not put in it.
 */

export interface CaptureRequest {
  diskPath: string
  uploadUrl: string
  /** qcow2 (default): sparse, tables first. raw: every byte, free space zeroed; with `compress: 'zstd'`, a .raw.zst. */
  format?: 'qcow2' | 'raw'
  /** qcow2: its clusters compressed (zlib: QEMU's deflate); raw: zstd only. */
  compress?: 'zstd' | 'zlib' | 'none'
  headers: Array<{ name: string; value: string }>
  checksumType: 'sha256' | 'sha512'
  signal?: AbortSignal
  logger?: Logger
  /** Tests: the upload's retry delay. */
  retryBaseDelayMs?: number
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
  const disk = await Disk.open(request.diskPath, { readOnly: true })
  try {
    const put = {
      url: request.uploadUrl, headers: request.headers, signal: request.signal, logger: request.logger, retryBaseDelayMs: request.retryBaseDelayMs,
    }
    const uploading = (total: number | undefined) => (bytes: number): void => { request.onProgress?.('upload', bytes, total) }
    let uploaded: UploadedCapture
    let notes: string[]
    if (request.format === 'raw') {
      const free = await findFreeSpace(disk)
      const zstdStream = request.compress === 'zstd'
      request.logger?.info({ disk: disk.path, sizeBytes: disk.sizeBytes, notes: free.notes, zstd: zstdStream }, 'capture: uploading the raw disk')
      const source = (): AsyncIterable<Buffer> => zstdStream ? zstdCompress(rawCaptureStream(disk, free), disk.sizeBytes) : rawCaptureStream(disk, free)
      const length = zstdStream ? undefined : disk.sizeBytes
      uploaded = await uploadHashed(source, length, put, request.checksumType, uploading(length))
      notes = [...free.notes, zstdStream ? `raw, zstd-compressed: ${disk.sizeBytes} bytes in ${uploaded.bytes}` : 'raw']
    } else {
      request.logger?.info({ disk: disk.path, sizeBytes: disk.sizeBytes }, 'capture: scanning the disk')
      const onScan = (p: { bytes: number; totalBytes: number }): void => { request.onProgress?.('scan', p.bytes, p.totalBytes) }
      const compression = request.compress === 'zstd' ? 'zstd' : request.compress === 'zlib' ? 'deflate' : undefined
      const plan = await planCapture(disk, { signal: request.signal, onProgress: onScan, compression, diskName: disk.path })
      request.logger?.info({ fileBytes: plan.layout.fileBytes, notes: plan.notes }, 'capture: uploading')
      uploaded = await uploadCapture(plan, put, request.checksumType, uploading(plan.layout.fileBytes))
      notes = plan.notes
    }
    const shownUrl = safeUrl(request.uploadUrl)
    const imageType = request.format === 'raw' ? 'raw' : 'qcow2'
    const description = { imageURL: shownUrl, imageType, imageCheckSum: uploaded.digestHex, imageCheckSumType: request.checksumType }
    return {
      code: 'CAPTURED',
      message: `Captured ${disk.path} to \`${shownUrl}\`: ${uploaded.bytes} bytes, ${request.checksumType} ${uploaded.digestHex}.`,
      bytes: uploaded.bytes,
      digest: { type: request.checksumType, hex: uploaded.digestHex },
      virtualSizeBytes: disk.sizeBytes,
      notes: [...notes, ...(uploaded.attempts > 1 ? [`uploaded on attempt ${uploaded.attempts}`] : [])],
      payloads: {
        installStart: { templateName: 'byoi_64', userMetadata: Object.entries(description).map(([key, value]) => ({ key, value })) },
        reinstall: { operatingSystem: 'byoi_64', customizations: description },
      },
    }
  } finally {
    await disk.close()
  }
}
