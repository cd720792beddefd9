/**
 * Ironic's config drive as the install's given ConfigDrive. The conductor sends it as
 * ironic-python-agent reads it (partition_utils.get_configdrive): a string that is the gzip'd,
 * base64'd ISO 9660 it built (`config-2`, files under openstack/…), or an http(s) URL to fetch that
 * same text from (Swift, or the conductor's own server); a body that is not base64 is taken as the
 * image itself, as ironic-python-agent does. An object (`meta_data`, `user_data`, `network_data`,
 * `vendor_data`: the form users give Ironic, should a conductor hand it on) becomes the files
 * cloud-init reads. The ISO's files are read (configdrive/read-iso9660) so that the install can
 * check the drive, lay it in a FAT on a 4Kn disk, and compare what the kernel mounts.
 */
import { gunzipSync } from 'node:zlib'
import { Agent, interceptors, request } from 'undici'
import type { Logger } from 'pino'
import { readIso9660Files } from '../configdrive/index.js'
import { errors } from '../errors/install-error.js'
import type { InstallRequest } from '../payload/install-request.js'
import { safeUrl } from '../report/redact.js'
import { isRecord } from './image-info.js'

export type GivenConfigDrive = NonNullable<InstallRequest['givenConfigDrive']>

/** Ironic's MAX_CONFIG_DRIVE_SIZE_MB: the drive's partition. */
const MAX_DRIVE_BYTES = 64 * 1024 * 1024
/** The text fetched from a URL: base64 of at most a gzip'd 64 MiB image (gzip never grows it much). */
const MAX_FETCHED_BYTES = Math.ceil((MAX_DRIVE_BYTES + 1024 * 1024) / 3) * 4
const FETCH_TIMEOUT_MS = 60_000

export interface ConfigDriveSourceOptions {
  /** Skip TLS verification (ipa-insecure). */
  insecure?: boolean
  signal?: AbortSignal
  logger?: Logger
}

/** undefined when Ironic sent none. Every failure is CONFIGDRIVE_FAILED, before any byte is written. */
export async function configDriveFromIronic (value: unknown, nodeUuid: string, options: ConfigDriveSourceOptions = {}): Promise<GivenConfigDrive | undefined> {
  if (value === undefined || value === null || value === '') return undefined
  try {
    if (isRecord(value)) return { files: filesOfContents(value, nodeUuid) }
    if (typeof value !== 'string') throw new Error(`the config drive is a ${Array.isArray(value) ? 'list' : typeof value}, expected a string or an object`)
    const text = /^https?:\/\//i.test(value) ? await fetchText(value, options) : Buffer.from(value, 'latin1')
    const iso = decode(text)
    if (iso.length > MAX_DRIVE_BYTES) throw new Error(`the config drive is ${iso.length} bytes, more than 64 MiB`)
    const { volumeId, files } = readIso9660Files(iso)
    if (volumeId.trim().toLowerCase() !== 'config-2') {
      throw new Error(`the config drive's ISO 9660 volume is labelled ${JSON.stringify(volumeId.slice(0, 32))}, not config-2`)
    }
    return { iso, files }
  } catch (err) {
    options.signal?.throwIfAborted()
    throw errors.configDriveFailed(err)
  }
}

/** base64 (whitespace allowed), then gzip; bytes that are not base64 are the image itself. */
function decode (text: Buffer): Buffer {
  const compact = text.toString('latin1').replace(/\s+/g, '')
  const isBase64 = compact.length > 0 && compact.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(compact)
  if (!isBase64) return text
  const packed = Buffer.from(compact, 'base64')
  if (packed[0] !== 0x1f || packed[1] !== 0x8b) throw new Error('the config drive is base64 but not gzip data')
  return gunzipSync(packed, { maxOutputLength: MAX_DRIVE_BYTES + 1 })
}

async function fetchText (url: string, options: ConfigDriveSourceOptions): Promise<Buffer> {
  const dispatcher = new Agent({ connect: { rejectUnauthorized: options.insecure !== true }, headersTimeout: FETCH_TIMEOUT_MS, bodyTimeout: FETCH_TIMEOUT_MS })
  try {
    const answer = await request(url, { dispatcher: dispatcher.compose(interceptors.redirect({ maxRedirections: 3 })), signal: options.signal })
    if (answer.statusCode !== 200) {
      await answer.body.dump()
      throw new Error(`fetching it from ${safeUrl(url)} answered HTTP ${answer.statusCode}`)
    }
    const chunks: Buffer[] = []
    let bytes = 0
    for await (const chunk of answer.body) {
      const piece = chunk as Buffer
      bytes += piece.length
      if (bytes > MAX_FETCHED_BYTES) {
        answer.body.destroy()
        throw new Error(`the config drive at ${safeUrl(url)} is larger than a 64 MiB drive can be`)
      }
      chunks.push(piece)
    }
    return Buffer.concat(chunks)
  } catch (err) {
    options.signal?.throwIfAborted()
    // undici's own messages can hold the URL: keep only what names the failure.
    if (err instanceof Error && err.message.includes(safeUrl(url))) throw err
    throw new Error(`the config drive could not be fetched from ${safeUrl(url)}: ${(err as { code?: string }).code ?? (err as Error).name}`, { cause: err })
  } finally {
    await dispatcher.close()
  }
}

/** The files of an OpenStack ConfigDrive from its contents: the form `baremetal node deploy --config-drive '{…}'` takes. */
function filesOfContents (contents: Record<string, unknown>, nodeUuid: string): GivenConfigDrive['files'] {
  const folder = 'openstack/latest'
  const metaData = contents.meta_data ?? {}
  if (!isRecord(metaData)) throw new Error('the config drive\'s meta_data is not an object')
  // cloud-init requires `uuid` (the instance id); Ironic's own builder uses the node's.
  const files = [{ path: `${folder}/meta_data.json`, data: Buffer.from(JSON.stringify({ uuid: nodeUuid, ...metaData }), 'utf8') }]
  const userData = contents.user_data
  if (userData !== undefined && userData !== null) {
    files.push({ path: `${folder}/user_data`, data: Buffer.from(typeof userData === 'string' ? userData : JSON.stringify(userData), 'utf8') })
  }
  for (const [key, name] of [['network_data', 'network_data.json'], ['vendor_data', 'vendor_data.json']] as const) {
    const data = contents[key]
    if (data !== undefined && data !== null) files.push({ path: `${folder}/${name}`, data: Buffer.from(JSON.stringify(data), 'utf8') })
  }
  return files
}
