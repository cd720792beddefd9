/** An S3 object to upload to, and the credentials that may write it (upload/s3-multipart's S3Target). Never logged nor shown. */
export interface CaptureS3Target {
  /** http(s)://HOST[:PORT], path-style addressing. */
  endpoint: string
  region: string
  bucket: string
  key: string
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

/** One capture asked of the service (`POST /capture/start`): the service's disk uploaded as an image. */
export interface CaptureJobRequest {
  /** One PUT to this http(s) URL (it may hold credentials: show it only through report/redact `safeUrl`); or `s3`. */
  uploadUrl?: string
  /** Or to an S3 bucket with the multipart API. */
  s3?: CaptureS3Target
  /** Headers sent with the PUT, in the order given. Values are secrets. */
  httpHeaders: Array<{ name: string; value: string }>
  format: 'qcow2' | 'raw'
  /** qcow2: its clusters compressed; raw: zstd (.raw.zst) or zlib (gzip, .raw.gz). */
  compress: 'zstd' | 'zlib' | 'none'
  checksumType: 'sha256' | 'sha512'
}
