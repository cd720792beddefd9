/**
 * The body of `POST /capture/start` (schemas/capture-start.json), checked and turned into a
 * `CaptureJobRequest`: the schema's generated validator checks the structure, the shared HTTP field
 * checkers (http-fields) the URL and headers. Every refusal is a PAYLOAD_* InstallError naming the
 * field; header values and the URL are never quoted.
 */
import type { ValidateFunction } from 'ajv'
import { errors, isInstallError } from '../errors/install-error.js'
import type { CaptureJobRequest, CaptureS3Target } from './capture-request.js'
import { checkHttpHeaders, checkHttpUrl } from './http-fields.js'
import { validated } from './parse-install-request.js'
import * as generated from './schema-validators.generated.js'

interface CaptureStartBody {
  uploadURL?: string
  s3?: Omit<CaptureS3Target, 'region'> & { region?: string }
  httpHeaders?: Record<string, string>
  imageType?: 'qcow2' | 'raw'
  compression?: 'zstd' | 'zlib' | 'none'
  imageCheckSumType?: 'sha256' | 'sha512'
}

const validateCaptureStart = generated.validateCaptureStart as unknown as ValidateFunction<CaptureStartBody>

export function parseCaptureRequest (body: unknown): CaptureJobRequest {
  try {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw errors.payloadBadField('request body', 'a JSON object')
    const given = validated(validateCaptureStart, body as Record<string, unknown>)
    const uploadURL = given.uploadURL === '' ? undefined : given.uploadURL
    if (uploadURL === undefined && given.s3 === undefined) throw errors.payloadMissingField('uploadURL or s3')
    if (uploadURL !== undefined && given.s3 !== undefined) throw errors.payloadBadField('s3', 'not given with uploadURL: one destination')
    const format = given.imageType ?? 'qcow2'
    const compress = given.compression ?? 'none'
    const httpHeaders = checkHttpHeaders(Object.entries(given.httpHeaders ?? {}).map(([name, value]) => ({
      name, value, nameField: 'httpHeaders', valueField: 'httpHeaders',
    })))
    const checksumType = given.imageCheckSumType ?? 'sha512'
    if (given.s3 !== undefined) {
      if (httpHeaders.length > 0) throw errors.payloadBadField('httpHeaders', 'none with s3 (each request is signed)')
      return { s3: checkS3(given.s3), httpHeaders, format, compress, checksumType }
    }
    return { uploadUrl: checkHttpUrl(uploadURL ?? '', 'uploadURL'), httpHeaders, format, compress, checksumType }
  } catch (err) {
    if (isInstallError(err)) throw err
    throw errors.payloadBadField('request body', 'a JSON object')
  }
}

/** The S3 destination: an endpoint of scheme and host only; names and keys not empty (their values never quoted). */
function checkS3 (s3: NonNullable<CaptureStartBody['s3']>): CaptureS3Target {
  if (!/^https?:\/\/[^/?#@\s]+\/?$/.test(s3.endpoint)) throw errors.payloadBadField('s3.endpoint', 'http(s)://HOST[:PORT]')
  for (const field of ['bucket', 'key', 'accessKeyId', 'secretAccessKey'] as const) {
    if (s3[field] === '') throw errors.payloadMissingField(`s3.${field}`)
  }
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(s3.bucket)) {
    throw errors.payloadBadField('s3.bucket', 'an S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)')
  }
  const region = s3.region === undefined || s3.region === '' ? 'us-east-1' : s3.region
  if (!/^[a-z0-9-]{1,32}$/.test(region)) throw errors.payloadBadField('s3.region', 'a region name such as eu-west-3')
  const target: CaptureS3Target = {
    endpoint: checkHttpUrl(s3.endpoint, 's3.endpoint').replace(/\/$/, ''),
    region,
    bucket: s3.bucket,
    key: s3.key.replace(/^\/+/, ''),
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  }
  if (target.key === '') throw errors.payloadMissingField('s3.key')
  if (s3.sessionToken !== undefined && s3.sessionToken !== '') target.sessionToken = s3.sessionToken
  return target
}
