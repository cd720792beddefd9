import t from 'tap'
import { imageFromImageInfo } from '../../../agent/ironic/image-info.js'
import { isInstallError } from '../../../agent/errors/install-error.js'

const sha256 = 'a'.repeat(64)
const base = { id: 'img-1', urls: ['http://127.0.0.1:8080/disk.raw'], disk_format: 'raw', os_hash_algo: 'sha256', os_hash_value: sha256 }

/** The InstallError code (and message) a bad image_info is refused with. */
function refusal (imageInfo: unknown): { code: string; message: string } {
  try {
    imageFromImageInfo(imageInfo, undefined)
  } catch (err) {
    if (isInstallError(err)) return { code: err.code, message: err.message }
    throw err
  }
  throw new Error('accepted')
}

t.test('a direct deploy\'s image_info becomes an install request', async (t) => {
  const image = imageFromImageInfo({ ...base, urls: [...base.urls, 'https://mirror.example.invalid/disk.raw'], stream_raw_images: true }, undefined)
  t.equal(image.request.imageUrl, 'http://127.0.0.1:8080/disk.raw')
  t.equal(image.request.imageType, 'raw')
  t.same(image.request.checksum, { type: 'sha256', hex: sha256 })
  t.same(image.moreUrls, ['https://mirror.example.invalid/disk.raw'])
  t.equal(image.id, 'img-1')
  t.equal(image.stream, true)
  t.same(image.request.httpHeaders, [])
  t.equal(imageFromImageInfo({ ...base, disk_format: 'qcow2', stream_raw_images: false }, undefined).stream, false)
})

t.test('os_hash_* wins over the legacy checksum; the legacy one is typed by its length', async (t) => {
  t.same(imageFromImageInfo({ ...base, checksum: 'b'.repeat(32) }, undefined).request.checksum, { type: 'sha256', hex: sha256 })
  const legacy = (hex: string): unknown => imageFromImageInfo({ id: 'x', urls: base.urls, disk_format: 'raw', checksum: hex }, undefined).request.checksum
  t.same(legacy('C'.repeat(32)), { type: 'md5', hex: 'c'.repeat(32) })
  t.same(legacy('1'.repeat(40)), { type: 'sha1', hex: '1'.repeat(40) })
  t.same(legacy('2'.repeat(64)), { type: 'sha256', hex: '2'.repeat(64) })
  t.same(legacy('3'.repeat(128)), { type: 'sha512', hex: '3'.repeat(128) })
  t.equal(imageFromImageInfo({ urls: base.urls, disk_format: 'raw' }, undefined).request.checksum, undefined, 'none given: none checked')
  t.equal(imageFromImageInfo({ urls: base.urls, disk_format: 'raw' }, undefined).id, 'disk.raw', 'no id: the URL\'s last part')
})

t.test('download headers and the two authorizations ironic-python-agent adds', async (t) => {
  const headers = imageFromImageInfo({ ...base, image_download_headers: { 'X-Auth-Token': 'secret-1' } }, undefined).request.httpHeaders
  t.same(headers, [{ name: 'X-Auth-Token', value: 'secret-1' }])
  const supplied = imageFromImageInfo({ ...base, image_request_authorization: Buffer.from('Bearer abc').toString('base64') }, undefined)
  t.same(supplied.request.httpHeaders, [{ name: 'Authorization', value: 'Bearer abc' }])
  const basic = imageFromImageInfo({ ...base, image_server_auth_strategy: 'http_basic', image_server_user: 'u', image_server_password: 'p' }, undefined)
  t.same(basic.request.httpHeaders, [{ name: 'Authorization', value: `Basic ${Buffer.from('u:p').toString('base64')}` }])
})

t.test('refusals name the field as Ironic spells it, never a secret', async (t) => {
  t.same(refusal(null), { code: 'PAYLOAD_MISSING_FIELD', message: 'Missing image_info, it is required.' })
  t.same(refusal({ ...base, urls: [] }), { code: 'PAYLOAD_MISSING_FIELD', message: 'Missing image_info.urls, it is required.' })
  t.same(refusal({ ...base, urls: ['ftp://h/x'] }), { code: 'PAYLOAD_BAD_FIELD', message: 'Bad image_info.urls[0], expected: an http or https URL.' })
  t.equal(refusal({ ...base, disk_format: 'vmdk' }).code, 'BAD_IMAGE_FORMAT')
  t.same(refusal({ ...base, root_mb: 10240, swap_mb: 0 }), {
    code: 'PAYLOAD_BAD_FIELD', message: 'Bad image_info, expected: a whole-disk image (partition images are not supported).',
  })
  t.equal(refusal({ ...base, disk_format: undefined }).code, 'BAD_IMAGE_FORMAT')
  t.equal(refusal({ ...base, os_hash_algo: 'sha384' }).code, 'BAD_CHECKSUM_TYPE')
  t.same(refusal({ ...base, os_hash_value: 'abc' }), {
    code: 'PAYLOAD_BAD_FIELD', message: 'Bad image_info.os_hash_value, expected: 64 hexadecimal digits for sha256.',
  })
  t.equal(refusal({ urls: base.urls, disk_format: 'raw', checksum: 'zz' }).code, 'PAYLOAD_BAD_FIELD')
  t.match(refusal({ urls: base.urls, disk_format: 'raw', checksum: 'http://h/SHA256SUMS' }).message, /checksum file URL is not supported/)
  const badHeader = refusal({ ...base, image_download_headers: { Range: 'bytes=0-' } })
  t.same(badHeader, { code: 'PAYLOAD_BAD_FIELD', message: 'Bad image_info.image_download_headers.Range, expected: a header the agent does not set itself.' })
  const badValue = refusal({ ...base, image_download_headers: { 'X-Token': 'top-secret\nInjected: 1' } })
  t.equal(badValue.code, 'PAYLOAD_BAD_FIELD')
  t.notMatch(badValue.message, /top-secret/)
  const noPassword = refusal({ ...base, image_server_auth_strategy: 'http_basic', image_server_user: 'u' })
  t.equal(noPassword.code, 'PAYLOAD_MISSING_FIELD')
})
