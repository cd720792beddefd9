/**
 * The body of `POST /capture/start` (schemas/capture-start.json), checked and turned into a
 * `CaptureJobRequest`: the schema's generated validator checks the structure, the shared HTTP field
 * checkers (http-fields) the URL and headers. Every refusal is a PAYLOAD_* InstallError naming the
 * field; header values and the URL are never quoted.
 */
import type { ValidateFunction } from 'ajv'
import { errors, isInstallError } from '../errors/install-error.js'
import type { CaptureJobRequest } from './capture-request.js'
import { checkHttpHeaders, checkHttpUrl } from './http-fields.js'
import { validated } from './parse-install-request.js'
import * as generated from './schema-validators.generated.js'

interface CaptureStartBody {
  uploadURL: string
  httpHeaders?: Record<string, string>
  imageType?: 'qcow2' | 'raw'
  compression?: 'zstd' | 'none'
  imageCheckSumType?: 'sha256' | 'sha512'
}

const validateCaptureStart = generated.validateCaptureStart as unknown as ValidateFunction<CaptureStartBody>

export function parseCaptureRequest (body: unknown): CaptureJobRequest {
  try {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw errors.payloadBadField('request body', 'a JSON object')
    const given = validated(validateCaptureStart, body as Record<string, unknown>)
    if (given.uploadURL === '') throw errors.payloadMissingField('uploadURL')
    const format = given.imageType ?? 'qcow2'
    const compress = given.compression ?? 'none'
    if (compress === 'zstd' && format !== 'raw') throw errors.payloadBadField('compression', 'none for a qcow2 (zstd goes with imageType raw)')
    const httpHeaders = checkHttpHeaders(Object.entries(given.httpHeaders ?? {}).map(([name, value]) => ({
      name, value, nameField: 'httpHeaders', valueField: 'httpHeaders',
    })))
    return { uploadUrl: checkHttpUrl(given.uploadURL, 'uploadURL'), httpHeaders, format, compress, checksumType: given.imageCheckSumType ?? 'sha512' }
  } catch (err) {
    if (isInstallError(err)) throw err
    throw errors.payloadBadField('request body', 'a JSON object')
  }
}
