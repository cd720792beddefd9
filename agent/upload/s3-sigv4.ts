/**
 * AWS Signature Version 4, header form (Authorization, x-amz-date, x-amz-security-token), written
 * with node:crypto alone. The steps and their names are AWS's ("Create a signed AWS API request",
 * and for S3 "Signature Calculations for the Authorization Header"): a canonical request, a string
 * to sign over its SHA-256, a signing key derived from the secret by four HMACs, the signature.
 *
 * Paths are given as sent, already percent-encoded (S3: each segment of the key encoded once, `/`
 * kept: `encodeS3Path`); they are neither normalised nor encoded twice, as S3 wants and AWS's
 * other services do not (only S3 is signed here). Query parameters are given raw and encoded here.
 * The secret, the signing key and the signature never leave this module but in the Authorization
 * header it returns, which callers never log.
 */
import { createHash, createHmac } from 'node:crypto'

export interface SigV4Credentials {
  accessKeyId: string
  secretAccessKey: string
  /** A temporary credential's session token: sent (and signed) as x-amz-security-token. */
  sessionToken?: string
}

export interface SigV4Request {
  method: string
  /** The path as sent, percent-encoded (the canonical URI as it is). */
  path: string
  /** Raw (unencoded) names and values; a name alone (`?uploads`) has the value ''. */
  query: Array<[string, string]>
  /** The headers to sign, host included; names in any case. */
  headers: Record<string, string>
  /** Hex SHA-256 of the body, or 'UNSIGNED-PAYLOAD'. */
  payloadHash: string
}

export interface SigV4Scope {
  credentials: SigV4Credentials
  region: string
  service: string
  now: Date
}

/** SHA-256 of an empty body (hex). */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

const ALGORITHM = 'AWS4-HMAC-SHA256'

/** RFC 3986 encoding as SigV4 wants it: unreserved characters kept, everything else %XX (uppercase), `/` kept when asked. */
export function uriEncode (text: string, keepSlash = false): string {
  let out = ''
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte)
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === '/')) out += c
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/** `/bucket/key` (or `/key`) with each segment encoded once, the key's slashes kept. */
export function encodeS3Path (...segments: string[]): string {
  return segments.map((s) => `/${uriEncode(s, true)}`).join('')
}

/** 20150830T123600Z */
export function amzDate (now: Date): string {
  return now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
}

function sha256Hex (text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex')
}

function hmac (key: Buffer | string, text: string): Buffer {
  return createHmac('sha256', key).update(text, 'utf8').digest()
}

/** The canonical request, and the signed headers' names (lowercase, sorted, `;`-joined). */
export function canonicalRequest (request: SigV4Request): { text: string; signedHeaders: string } {
  const query = request.query
    .map(([name, value]) => [uriEncode(name), uriEncode(value)] as const)
    .sort(([a, av], [b, bv]) => a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0)
    .map(([name, value]) => `${name}=${value}`)
    .join('&')
  // Header names lowercased and sorted; values trimmed, inner runs of spaces made one.
  const headers = Object.entries(request.headers)
    .map(([name, value]) => [name.toLowerCase(), value.trim().replace(/ +/g, ' ')] as const)
    .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  const signedHeaders = headers.map(([name]) => name).join(';')
  const text = [
    request.method.toUpperCase(),
    request.path === '' ? '/' : request.path,
    query,
    headers.map(([name, value]) => `${name}:${value}\n`).join(''),
    signedHeaders,
    request.payloadHash,
  ].join('\n')
  return { text, signedHeaders }
}

/** `20150830/us-east-1/service/aws4_request` */
export function credentialScope (now: Date, region: string, service: string): string {
  return `${amzDate(now).slice(0, 8)}/${region}/${service}/aws4_request`
}

export function stringToSign (canonical: string, now: Date, region: string, service: string): string {
  return [ALGORITHM, amzDate(now), credentialScope(now, region, service), sha256Hex(canonical)].join('\n')
}

/** kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
export function signingKey (secretAccessKey: string, now: Date, region: string, service: string): Buffer {
  const date = hmac(`AWS4${secretAccessKey}`, amzDate(now).slice(0, 8))
  return hmac(hmac(hmac(date, region), service), 'aws4_request')
}

/**
 * The headers to add to the request: x-amz-date, x-amz-security-token (with a session token) and
 * authorization. Both x-amz-* headers are signed with the request's own (`request.headers` is not
 * changed).
 */
export function signV4 (request: SigV4Request, scope: SigV4Scope): Record<string, string> {
  const { credentials, region, service, now } = scope
  const added: Record<string, string> = { 'x-amz-date': amzDate(now) }
  if (credentials.sessionToken !== undefined) added['x-amz-security-token'] = credentials.sessionToken
  const { text, signedHeaders } = canonicalRequest({ ...request, headers: { ...request.headers, ...added } })
  const signature = createHmac('sha256', signingKey(credentials.secretAccessKey, now, region, service))
    .update(stringToSign(text, now, region, service), 'utf8').digest('hex')
  added.authorization = `${ALGORITHM} Credential=${credentials.accessKeyId}/${credentialScope(now, region, service)}, ` +
    `SignedHeaders=${signedHeaders}, Signature=${signature}`
  return added
}

/** An S3 request signed: x-amz-content-sha256 (the payload hash, which S3 requires) added and signed too. */
export function signS3 (request: SigV4Request, scope: Omit<SigV4Scope, 'service'>): Record<string, string> {
  const headers = { ...request.headers, 'x-amz-content-sha256': request.payloadHash }
  return { 'x-amz-content-sha256': request.payloadHash, ...signV4({ ...request, headers }, { ...scope, service: 's3' }) }
}
