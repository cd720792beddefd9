/** One capture asked of the service (`POST /capture/start`): the service's disk uploaded as an image. */
export interface CaptureJobRequest {
  /** http(s); may hold credentials: show it only through report/redact `safeUrl`. */
  uploadUrl: string
  /** Headers sent with the upload, in the order given. Values are secrets. */
  httpHeaders: Array<{ name: string; value: string }>
  format: 'qcow2' | 'raw'
  compress: 'zstd' | 'none'
  checksumType: 'sha256' | 'sha512'
}
