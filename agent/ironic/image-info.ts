/**
 * Ironic's `image_info` (and its config drive) as an install request: what a `direct` deploy of a
 * whole-disk image hands its agent in `deploy.execute_deploy_step` (`write_image`) or
 * `standby.prepare_image`, read the way ironic-python-agent reads it (extensions/standby.py): the
 * first of `urls`, `disk_format`, `os_hash_algo` + `os_hash_value` or the legacy `checksum` (its
 * algorithm told by its length), `image_download_headers`, `image_request_authorization` (a base64
 * Authorization value) or `image_server_auth_strategy: http_basic` with `image_server_user` and
 * `image_server_password`. What cannot be used is refused in the agent's result style, naming the
 * field as Ironic spells it, so that the node's `last_error` reads like an install result.
 */
import { checkHttpHeaders, checkHttpUrl, HEADER_NAME, type GivenHeader } from '../payload/http-fields.js'
import { checksumHexLength, type ChecksumType, type InstallRequest } from '../payload/install-request.js'
import { errors } from '../errors/install-error.js'

/** What the install takes from image_info, and what the deploy reports back about it. */
export interface IronicImage {
  request: InstallRequest
  /** image_info.id (Glance's image id, or the URL's last part), for the logs and the step's result. */
  id: string
  /** The other URLs of `urls`, tried in turn when the first cannot be downloaded. */
  moreUrls: string[]
  /** stream_raw_images: write the raw image while it downloads (ironic-python-agent's default: true). */
  stream: boolean
}

const HASH_ALGOS: readonly ChecksumType[] = ['md5', 'sha1', 'sha256', 'sha512']

/** image_info and the step's config drive (already turned into files by config-drive-source) as an install. */
export function imageFromImageInfo (imageInfo: unknown, configDrive: InstallRequest['givenConfigDrive']): IronicImage {
  if (!isRecord(imageInfo)) throw errors.payloadMissingField('image_info')
  const urls = imageInfo.urls
  if (!Array.isArray(urls) || urls.length === 0) throw errors.payloadMissingField('image_info.urls')
  const checkedUrls = urls.map((url, index) => {
    if (typeof url !== 'string') throw errors.payloadBadField(`image_info.urls[${index}]`, 'an http or https URL')
    checkHttpUrl(url, `image_info.urls[${index}]`)
    return url
  })
  const imageUrl = checkedUrls[0] as string
  // A partition image (root_gb, swap, …: Ironic's `image_type: partition`) needs a table made around it: not this agent's.
  if (imageInfo.image_type === 'partition' || imageInfo.root_mb !== undefined) {
    throw errors.payloadBadField('image_info', 'a whole-disk image (partition images are not supported)')
  }
  const diskFormat = imageInfo.disk_format
  if (diskFormat !== 'raw' && diskFormat !== 'qcow2') throw errors.badImageFormat(new Error(`image_info.disk_format is ${JSON.stringify(diskFormat)}`))

  const request: InstallRequest = {
    source: 'install-start',
    imageUrl,
    imageType: diskFormat,
    httpHeaders: downloadHeaders(imageInfo),
    metadata: {},
    ...checksumOf(imageInfo),
    ...(configDrive === undefined ? {} : { givenConfigDrive: configDrive }),
  }
  const id = typeof imageInfo.id === 'string' && imageInfo.id !== '' ? imageInfo.id : imageUrl.split('/').pop() ?? ''
  return { request, id, moreUrls: checkedUrls.slice(1), stream: imageInfo.stream_raw_images !== false }
}

/** os_hash_algo + os_hash_value (preferred, as Ironic does), or `checksum` whose length tells md5/sha1/sha256/sha512. */
function checksumOf (imageInfo: Record<string, unknown>): Pick<InstallRequest, 'checksum'> {
  const algo = imageInfo.os_hash_algo
  const value = imageInfo.os_hash_value
  if (typeof algo === 'string' && algo !== '' && typeof value === 'string' && value !== '') {
    const type = algo.toLowerCase() as ChecksumType
    if (!HASH_ALGOS.includes(type)) throw errors.badChecksumType()
    const hex = value.toLowerCase()
    if (hex.length !== checksumHexLength[type] || !/^[0-9a-f]+$/.test(hex)) {
      throw errors.payloadBadField('image_info.os_hash_value', `${checksumHexLength[type]} hexadecimal digits for ${type}`)
    }
    return { checksum: { type, hex } }
  }
  const legacy = imageInfo.checksum
  if (typeof legacy !== 'string' || legacy === '') return {}
  if (/^https?:\/\//i.test(legacy)) {
    throw errors.payloadBadField('image_info.checksum', 'a digest in hexadecimal (a checksum file URL is not supported: give os_hash_algo and os_hash_value)')
  }
  const hex = legacy.toLowerCase()
  const type = HASH_ALGOS.find((candidate) => checksumHexLength[candidate] === hex.length)
  if (type === undefined || !/^[0-9a-f]+$/.test(hex)) {
    throw errors.payloadBadField('image_info.checksum', 'an md5, sha1, sha256 or sha512 digest in hexadecimal')
  }
  return { checksum: { type, hex } }
}

/**
 * image_download_headers, then the Authorization ironic-python-agent would add: a given one
 * (image_request_authorization, base64) or HTTP basic from image_server_user/password. Values are
 * secrets: never in a message.
 */
function downloadHeaders (imageInfo: Record<string, unknown>): InstallRequest['httpHeaders'] {
  const headers: GivenHeader[] = []
  const add = (name: string, value: string, field: string): void => { headers.push({ name, value, nameField: field, valueField: field }) }
  const given = imageInfo.image_download_headers
  if (given !== undefined && given !== null) {
    if (!isRecord(given)) throw errors.payloadBadField('image_info.image_download_headers', 'an object of header names to string values')
    for (const [name, value] of Object.entries(given)) {
      if (typeof value !== 'string') throw errors.payloadBadField('image_info.image_download_headers', 'string values')
      add(name, value, `image_info.image_download_headers.${HEADER_NAME.test(name) ? name : '(a name)'}`)
    }
  }
  const hasAuthorization = (): boolean => headers.some((header) => header.name.toLowerCase() === 'authorization')
  const supplied = imageInfo.image_request_authorization
  if (typeof supplied === 'string' && supplied !== '' && !hasAuthorization()) {
    const value = Buffer.from(supplied, 'base64').toString('utf8')
    if (value === '' || /[\r\n]/.test(value)) throw errors.payloadBadField('image_info.image_request_authorization', 'an Authorization value in base64')
    add('Authorization', value, 'image_info.image_request_authorization')
  }
  if (imageInfo.image_server_auth_strategy === 'http_basic' && !hasAuthorization()) {
    const user = imageInfo.image_server_user
    const password = imageInfo.image_server_password
    if (typeof user !== 'string' || user === '' || typeof password !== 'string' || password === '') {
      throw errors.payloadMissingField('image_info.image_server_user and image_server_password')
    }
    add('Authorization', `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`, 'image_info.image_server_user')
  }
  return checkHttpHeaders(headers)
}

export function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
