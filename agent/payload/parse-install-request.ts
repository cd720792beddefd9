/**
 * The install payload, in either of OVH's shapes, checked and turned into one `InstallRequest`.
 *
 * Two steps: the JSON Schema (schemas/, also the source of /openapi.json; here Ajv's code for it,
 * generated ahead) checks the structure,
 * then the field checkers below check the values. Each shape has one small function that gathers
 * its fields under the names the customer wrote; the checkers are shared. Every refusal is an
 * `InstallError` naming the field; header values and URLs are never quoted (they hold secrets).
 */
import type { ErrorObject, ValidateFunction } from 'ajv'
import { errors, isInstallError, type InstallError } from '../errors/install-error.js'
import { checksumHexLength, type ChecksumType, type ImageType, type InstallRequest } from './install-request.js'
import { checkHttpHeaders, checkHttpUrl, HEADER_NAME, type GivenHeader } from './http-fields.js'
import * as generated from './schema-validators.generated.js'

interface InstallStartBody {
  templateName: string
  details?: { customHostname?: string }
  userMetadata: Array<{ key: string; value: string }>
}

interface ReinstallBody {
  operatingSystem: string
  customizations: {
    hostname?: string
    imageURL?: string
    imageType?: string
    imageCheckSum?: string
    imageCheckSumType?: string
    httpHeaders?: Record<string, string>
    configDriveUserData?: string
    configDriveMetadata?: Record<string, string>
    sshKey?: string
    efiBootloaderPath?: string
    scrub?: boolean | { paths?: string[] }
  }
  storage?: Array<{ diskGroupId?: number }>
}

// Ajv's code for the two schemas, generated ahead (scripts/schema-validators.ts, with ownProperties:
// a key counts only when the body itself holds it, never through a prototype): Ajv itself is not loaded.
const validateInstallStart = generated.validateInstallStart as unknown as ValidateFunction<InstallStartBody>
const validateReinstall = generated.validateReinstall as unknown as ValidateFunction<ReinstallBody>

/** What both shapes carry, before checking; empty strings are already dropped (not given). */
interface GivenFields {
  imageURL?: string
  imageType?: string
  imageCheckSum?: string
  imageCheckSumType?: string
  httpHeaders: GivenHeader[]
  hostname?: string
  hostnameField: string
  configDriveUserData?: string
  /** Still unchecked: parsed from a JSON string (install/start) or as given (reinstall). */
  configDriveMetadata?: unknown
  sshKey?: string
  efiBootloaderPath?: string
  /** Still unchecked: a string (install/start: `true`, `false` or JSON), or as given (reinstall). */
  scrub?: unknown
  /** reinstall's storage[0].diskGroupId (the schema took a whole number from 1). */
  diskGroupId?: number
}

/**
 * Checks an install payload of either shape: a body with `userMetadata` is install/start (it wins
 * if `customizations` is there too), one with `customizations` is reinstall. Unknown keys are
 * ignored. Throws only `InstallError`s with a `PAYLOAD_*`, `BAD_IMAGE_FORMAT` or
 * `BAD_CHECKSUM_TYPE` code, whatever the body.
 */
export function parseInstallRequest (body: unknown): InstallRequest {
  try {
    if (!isObject(body)) throw errors.payloadBadField('request body', 'a JSON object')
    if (Object.hasOwn(body, 'userMetadata')) {
      return toInstallRequest('install-start', fromInstallStart(validated(validateInstallStart, body)))
    }
    if (Object.hasOwn(body, 'customizations')) {
      return toInstallRequest('reinstall', fromReinstall(validated(validateReinstall, body)))
    }
    throw errors.payloadMissingField('userMetadata or customizations')
  } catch (err) {
    if (isInstallError(err)) throw err
    // Not reachable with JSON input as far as we know; kept so that no body (absurd nesting, a
    // value no JSON parser makes) can turn into anything but a payload refusal.
    throw errors.payloadBadField('request body', 'a JSON object')
  }
}

// ---- The two shapes ----

const HEADER_KEY = /^httpHeaders(\d+)(Key|Value)$/

function fromInstallStart (body: InstallStartBody): GivenFields {
  const metadata = new Map<string, string>()
  for (const [index, { key, value }] of body.userMetadata.entries()) {
    if (metadata.has(key)) {
      throw errors.payloadBadField(isShowable(key) ? `userMetadata key ${key}` : `userMetadata[${index}].key`, 'each key once')
    }
    metadata.set(key, value)
  }
  const get = (key: string): string | undefined => given(metadata.get(key))

  // httpHeaders{N}Key / httpHeaders{N}Value pairs, keyed by N as written, ordered by N's value.
  const pairs = new Map<string, { name?: string; value?: string }>()
  for (const [key, value] of metadata) {
    const [, n, part] = HEADER_KEY.exec(key) ?? []
    if (n === undefined) continue
    const pair = pairs.get(n) ?? {}
    if (part === 'Key') pair.name = value
    else pair.value = value
    pairs.set(n, pair)
  }
  const httpHeaders = [...pairs].sort(([a], [b]) => compareDecimal(a, b)).map(([n, pair]) => {
    const nameField = shortened(`httpHeaders${n}Key`)
    const valueField = shortened(`httpHeaders${n}Value`)
    if (pair.name === undefined) throw errors.payloadMissingField(nameField)
    if (pair.value === undefined) throw errors.payloadMissingField(valueField)
    return { name: pair.name, value: pair.value, nameField, valueField }
  })

  return {
    imageURL: get('imageURL'),
    imageType: get('imageType'),
    imageCheckSum: get('imageCheckSum'),
    imageCheckSumType: get('imageCheckSumType'),
    httpHeaders,
    hostname: given(body.details?.customHostname),
    hostnameField: 'details.customHostname',
    configDriveUserData: get('configDriveUserData'),
    configDriveMetadata: parseJsonMetadata(get('configDriveMetadata')),
    sshKey: get('sshKey'),
    efiBootloaderPath: get('efiBootloaderPath'),
    scrub: parseJsonScrub(get('scrub')),
  }
}

function fromReinstall ({ customizations: c, storage }: ReinstallBody): GivenFields {
  return {
    imageURL: given(c.imageURL),
    imageType: given(c.imageType),
    imageCheckSum: given(c.imageCheckSum),
    imageCheckSumType: given(c.imageCheckSumType),
    httpHeaders: Object.entries(c.httpHeaders ?? {}).map(([name, value], index) => {
      const field = memberField('httpHeaders', name, index)
      return { name, value, nameField: field, valueField: field }
    }),
    hostname: given(c.hostname),
    hostnameField: 'customizations.hostname',
    configDriveUserData: given(c.configDriveUserData),
    configDriveMetadata: c.configDriveMetadata,
    sshKey: given(c.sshKey),
    efiBootloaderPath: given(c.efiBootloaderPath),
    scrub: c.scrub,
    diskGroupId: storage?.[0]?.diskGroupId,
  }
}

function toInstallRequest (source: InstallRequest['source'], fields: GivenFields): InstallRequest {
  const request: InstallRequest = {
    source,
    imageUrl: checkImageUrl(fields.imageURL),
    imageType: checkImageType(fields.imageType),
    httpHeaders: [],
    metadata: {},
  }
  const checksum = checkChecksum(fields.imageCheckSum, fields.imageCheckSumType)
  if (checksum !== undefined) request.checksum = checksum
  request.httpHeaders = checkHttpHeaders(fields.httpHeaders)
  if (fields.hostname !== undefined) request.hostname = checkHostname(fields.hostname, fields.hostnameField)
  if (fields.configDriveUserData !== undefined) request.userData = checkUserData(fields.configDriveUserData)
  request.metadata = checkMetadata(fields.configDriveMetadata)
  if (fields.sshKey !== undefined) request.sshKey = checkSshKey(fields.sshKey)
  if (fields.efiBootloaderPath !== undefined) request.efiBootloaderPath = checkEfiBootloaderPath(fields.efiBootloaderPath)
  const scrub = checkScrub(fields.scrub)
  if (scrub !== undefined) request.scrub = scrub
  if (fields.diskGroupId !== undefined) request.diskGroupId = checkDiskGroupId(fields.diskGroupId)
  return request
}

// ---- Field checkers, shared by both shapes ----

function checkImageUrl (raw: string | undefined): string {
  if (raw === undefined) throw errors.payloadMissingField('imageURL')
  return checkHttpUrl(raw, 'imageURL')
}

function checkImageType (raw: string | undefined): ImageType {
  if (raw === undefined) throw errors.payloadMissingField('imageType')
  // Exact lower-case values, as OVH takes them.
  if (raw !== 'qcow2' && raw !== 'raw') throw errors.badImageFormat()
  return raw
}

function checkChecksum (rawHex: string | undefined, rawType: string | undefined): InstallRequest['checksum'] {
  if (rawType === undefined) {
    if (rawHex !== undefined) throw errors.payloadMissingField('imageCheckSumType')
    return undefined
  }
  const type = rawType.toLowerCase()
  if (!isChecksumType(type)) throw errors.badChecksumType()
  if (rawHex === undefined) return undefined // a type alone asks for nothing
  const hex = rawHex.trim().toLowerCase()
  const digits = checksumHexLength[type]
  if (hex.length !== digits || !/^[0-9a-f]+$/.test(hex)) {
    throw errors.payloadBadField('imageCheckSum', `${digits} hexadecimal digits for ${type}`)
  }
  return { type, hex }
}

/** install/start's `scrub`: `true`, `false`, or the JSON of reinstall's object. */
function parseJsonScrub (raw: string | undefined): unknown {
  if (raw === undefined || raw === 'true' || raw === 'false') return raw === undefined ? undefined : raw === 'true'
  try {
    return JSON.parse(raw) as unknown
  } catch {
    throw errors.payloadBadField('scrub', SCRUB_EXPECTED)
  }
}

const SCRUB_EXPECTED = 'true, false, or an object { "paths": [absolute paths] }'
const SCRUB_MAX_PATHS = 64
const SCRUB_PATH_MAX_CHARS = 4096

/** `scrub`: undefined (not asked) or the paths to remove besides the defaults. */
function checkScrub (raw: unknown): InstallRequest['scrub'] {
  if (raw === undefined || raw === false) return undefined
  if (raw === true) return { paths: [] }
  if (!isObject(raw) || Object.keys(raw).some((key) => key !== 'paths')) throw errors.payloadBadField('scrub', SCRUB_EXPECTED)
  const paths: unknown = raw['paths'] ?? []
  if (!Array.isArray(paths) || paths.length > SCRUB_MAX_PATHS) throw errors.payloadBadField('scrub.paths', `at most ${SCRUB_MAX_PATHS} absolute paths`)
  return {
    paths: paths.map((path: unknown, index) => {
      const field = `scrub.paths[${index}]`
      if (typeof path !== 'string' || !path.startsWith('/') || path.length > SCRUB_PATH_MAX_CHARS || path.includes('\0')) {
        throw errors.payloadBadField(field, 'an absolute path')
      }
      const parts = path.split('/').filter((part) => part !== '')
      if (parts.length === 0) throw errors.payloadBadField(field, 'a path below /, not / itself')
      if (parts.some((part) => part === '.' || part === '..')) throw errors.payloadBadField(field, 'a path without . or .. components')
      return `/${parts.join('/')}`
    }),
  }
}

const DISK_GROUP_FIELD = 'storage[0].diskGroupId'

/** The schema took a whole number from 1; one past a safe integer is refused here. */
function checkDiskGroupId (raw: number): number {
  if (!Number.isSafeInteger(raw) || raw < 1) throw errors.payloadBadField(DISK_GROUP_FIELD, 'a whole number from 1')
  return raw
}

/**
 * A service or CLI that installs on one disk it was given (--disk PATH, or hints: chosen at its
 * start) has no disk groups to choose from: it takes diskGroupId 1 (OVH's default, the disk it
 * serves) and refuses any other, naming the disk.
 */
export function checkFixedDiskGroup (request: InstallRequest, diskPath: string): void {
  if (request.diskGroupId === undefined || request.diskGroupId === 1) return
  throw errors.payloadBadField(DISK_GROUP_FIELD,
    `1 (the agent installs on ${diskPath}, the disk it was given; disk group ${request.diskGroupId} is chosen only under serve --disk auto)`)
}

const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

/** RFC 1123 host name; one trailing dot (an absolute FQDN) is accepted and dropped. */
function checkHostname (raw: string, field: string): string {
  const name = raw.endsWith('.') ? raw.slice(0, -1) : raw
  if (name.length > 253 || !name.split('.').every((label) => HOST_LABEL.test(label))) {
    throw errors.payloadBadField(field, 'a host name of letters, digits and hyphens (RFC 1123)')
  }
  return name
}

const USER_DATA_MAX_BYTES = 16 * 1024 * 1024 // 16 MiB, a quarter of the 64 MiB ConfigDrive

function checkUserData (raw: string): string {
  if (Buffer.byteLength(raw, 'utf8') > USER_DATA_MAX_BYTES) throw errors.payloadBadField('configDriveUserData', 'at most 16 MiB')
  return raw
}

function parseJsonMetadata (raw: string | undefined): unknown {
  if (raw === undefined) return undefined
  try {
    return JSON.parse(raw)
  } catch {
    throw errors.payloadBadField('configDriveMetadata', 'a JSON object of strings')
  }
}

function checkMetadata (raw: unknown): Record<string, string> {
  const metadata: Record<string, string> = {}
  if (raw === undefined) return metadata
  if (!isObject(raw)) throw errors.payloadBadField('configDriveMetadata', 'a JSON object of strings')
  for (const [key, value] of Object.entries(raw)) {
    // `__proto__` is refused, not stored: assigned, it would replace the object's prototype, and
    // kept as an own property it would do so in the first copy made with Object.assign.
    if (key === '__proto__') throw errors.payloadBadField('configDriveMetadata', 'a JSON object of strings without a __proto__ key')
    if (typeof value !== 'string') throw errors.payloadBadField('configDriveMetadata', 'a JSON object of strings')
    metadata[key] = value
  }
  return metadata
}

const SSH_KEY_TYPES = /ssh-rsa|ssh-dss|ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com/
/** Type, base64 blob, optional comment (the same source as one literal: String.raw keeps the backslashes). */
const SSH_KEY = new RegExp(String.raw`^(${SSH_KEY_TYPES.source})[ \t]+([A-Za-z0-9+/]+={0,2})(?:[ \t][^\r\n\0]*)?$`)

/** One authorized_keys line: type, base64 blob, optional comment. Surrounding whitespace is dropped. */
function checkSshKey (raw: string): string {
  const key = raw.trim()
  const [, type, blob] = SSH_KEY.exec(key) ?? []
  if (type === undefined || blob === undefined || !blobHasType(blob, type)) throw errors.payloadBadField('sshKey', 'an OpenSSH public key')
  return key
}

/** The blob opens with its key type as an SSH string (RFC 4253 §6.6): catches truncated or mislabelled keys. */
function blobHasType (base64: string, type: string): boolean {
  const blob = Buffer.from(base64, 'base64')
  return blob.length > 4 + type.length &&
    blob.readUInt32BE(0) === type.length &&
    blob.toString('latin1', 4, 4 + type.length) === type
}

const EFI_PATH_MAX_CHARS = 255

function checkEfiBootloaderPath (raw: string): string {
  const ok = raw.length <= EFI_PATH_MAX_CHARS &&
    /^[\x20-\x7e]+$/.test(raw) &&
    raw.startsWith('\\') &&
    /\.efi$/i.test(raw) &&
    raw.slice(1).split('\\').every((part) => part !== '' && !/^\.+$/.test(part) && !part.includes('/'))
  if (!ok) throw errors.payloadBadField('efiBootloaderPath', 'a path like \\EFI\\BOOT\\BOOTX64.EFI')
  return raw
}

// ---- Helpers ----

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isChecksumType (value: string): value is ChecksumType {
  return Object.hasOwn(checksumHexLength, value)
}

/** An empty string counts as not given (forms and providers send them for unset fields). */
function given (value: string | undefined): string | undefined {
  return value === '' ? undefined : value
}

/** Compares two digit strings by value, then as written (`1` before `01`). */
function compareDecimal (a: string, b: string): number {
  const x = a.replace(/^0+(?=\d)/, '')
  const y = b.replace(/^0+(?=\d)/, '')
  if (x.length !== y.length) return x.length - y.length
  return x < y ? -1 : x > y ? 1 : a.length - b.length
}

/** Keys short and plain enough to quote in a message (header names, metadata keys). */
function isShowable (key: string): boolean {
  return key.length <= 64 && HEADER_NAME.test(key)
}

/** A field name cut to a length fit for a message (an absurd N in `httpHeaders{N}Key`). */
function shortened (field: string): string {
  return field.length <= 64 ? field : `${field.slice(0, 40)}…${field.slice(-20)}`
}

/** `parent.key`, or `parent[#n]` (n-th key, from 1) when the key should not be quoted. */
function memberField (parent: string, key: string, index: number): string {
  if (!isShowable(key)) return `${parent}[#${index + 1}]`
  return parent === '' ? key : `${parent}.${key}`
}

/** The body if the schema's validator takes it, else the refusal naming the first field it blames (parse-capture-request uses it too). */
export function validated<T> (validate: ValidateFunction<T>, body: Record<string, unknown>): T {
  if (validate(body)) return body
  throw schemaError(validate.errors?.[0], body)
}

const TYPE_NAMES: Record<string, string> = { string: 'a string', object: 'an object', array: 'an array', integer: 'a whole number' }

/** Ajv's first error as a message naming the field, e.g. `Bad userMetadata[2].value, expected: a string.` */
function schemaError (error: ErrorObject | undefined, body: unknown): InstallError {
  const field = pointerField(body, error?.instancePath ?? '')
  const missing: unknown = error?.params['missingProperty']
  if (error?.keyword === 'required' && typeof missing === 'string') return errors.payloadMissingField(memberField(field, missing, 0))
  const type: unknown = error?.params['type']
  const allowed: unknown = error?.params['allowedValues']
  const limit: unknown = error?.params['limit']
  const expected = error?.keyword === 'type' && typeof type === 'string'
    ? TYPE_NAMES[type]
    : error?.keyword === 'enum' && Array.isArray(allowed) ? `one of ${allowed.join(', ')}`
      : error?.keyword === 'minimum' && typeof limit === 'number' ? `a whole number from ${limit}` : undefined
  return errors.payloadBadField(field === '' ? 'request body' : field, expected ?? 'a value as the schema describes')
}

/** A JSON pointer into `body` as the customer reads it: `/userMetadata/2/value` → `userMetadata[2].value`. */
function pointerField (body: unknown, pointer: string): string {
  let field = ''
  let node = body
  for (const token of pointer.split('/').slice(1)) {
    const key = token.replaceAll('~1', '/').replaceAll('~0', '~')
    if (Array.isArray(node)) {
      field += `[${key}]`
      node = node[Number(key)]
    } else if (isObject(node)) {
      field = memberField(field, key, Object.keys(node).indexOf(key))
      node = node[key]
    }
  }
  return field
}
