import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { isInstallError } from '../../../agent/errors/install-error.js'
import type { InstallRequest } from '../../../agent/payload/install-request.js'
import { checkFixedDiskGroup, parseInstallRequest } from '../../../agent/payload/parse-install-request.js'
import { installStartSchema, reinstallSchema, schemasDir } from '../../../agent/payload/schemas.js'

const SHA512 = createHash('sha512').update('image').digest('hex')
const SHA256 = createHash('sha256').update('image').digest('hex')
const ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID49eqVCyulQKQ8F0//T/TjoV0cfC/gEGkQij8PNvoUR alice@laptop'
const ECDSA384 = 'ecdsa-sha2-nistp384 ' +
  'AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBBSmjJdp+EJW4OUnxvGljv+BHaL3mZZ0CEQTpho7Gs7eyCtPEds7OSEahCr6Wvdl' +
  'G/QCZvc9Ity0lTXl4NbaNcB0lGhpoKmxeoxuPL2JB4VLiDpE8x26c0sOsiwD94OJJQ=='
const IMAGE = { imageURL: 'https://example.invalid/os.qcow2', imageType: 'qcow2' }

/** An install/start body from userMetadata pairs (a list, so keys may repeat). */
function start (pairs: Array<[string, string]> | Record<string, string>, extra: Record<string, unknown> = {}): unknown {
  const list = Array.isArray(pairs) ? pairs : Object.entries(pairs)
  return { templateName: 'byoi_64', ...extra, userMetadata: list.map(([key, value]) => ({ key, value })) }
}

function reinstall (customizations: Record<string, unknown>): unknown {
  return { operatingSystem: 'byoi_64', customizations }
}

/** The refusal `parseInstallRequest` gives; fails the test on acceptance or a foreign error. */
function refusal (body: unknown): { code: string; message: string } {
  try {
    parseInstallRequest(body)
  } catch (err) {
    if (isInstallError(err)) return { code: err.code, message: err.message }
    throw err
  }
  throw new Error('the body was accepted')
}

const missing = (message: string) => ({ code: 'PAYLOAD_MISSING_FIELD', message })
const bad = (message: string) => ({ code: 'PAYLOAD_BAD_FIELD', message })

// ---- OVH's examples ----

const ovhInstallStart = {
  details: { customHostname: 'myCustomBYOI' },
  templateName: 'byoi_64',
  userMetadata: [
    { key: 'imageURL', value: 'https://example.invalid/debian-11-generic-amd64.raw' },
    { key: 'imageType', value: 'raw' },
    { key: 'httpHeaders0Key', value: 'Authorization' },
    { key: 'httpHeaders0Value', value: 'Basic bG9naW46cGFzc3dvcmQ=' },
    { key: 'imageCheckSum', value: SHA512 },
    { key: 'imageCheckSumType', value: 'sha512' },
    { key: 'configDriveUserData', value: '#!/bin/bash\necho "Hi, sounds that BYOI is a success!" > /etc/motd\n' },
  ],
}

const ovhReinstall = {
  operatingSystem: 'byoi_64',
  customizations: {
    hostname: 'my-server',
    imageURL: 'https://example.invalid/os.qcow2',
    imageType: 'qcow2',
    imageCheckSum: SHA256,
    imageCheckSumType: 'sha256',
    httpHeaders: { Authorization: 'Basic bG9naW46cGFzc3dvcmQ=' },
    configDriveUserData: '#cloud-config\npackages: [nginx]\n',
    configDriveMetadata: { role: 'web' },
    sshKey: ED25519,
    efiBootloaderPath: '\\EFI\\BOOT\\BOOTX64.EFI',
  },
  storage: [{ diskGroupId: 1 }],
}

t.test('the install/start example of the OVH guide', async (t) => {
  t.strictSame(parseInstallRequest(ovhInstallStart), {
    source: 'install-start',
    imageUrl: 'https://example.invalid/debian-11-generic-amd64.raw',
    imageType: 'raw',
    checksum: { type: 'sha512', hex: SHA512 },
    httpHeaders: [{ name: 'Authorization', value: 'Basic bG9naW46cGFzc3dvcmQ=' }],
    hostname: 'myCustomBYOI',
    userData: '#!/bin/bash\necho "Hi, sounds that BYOI is a success!" > /etc/motd\n',
    metadata: {},
  } satisfies InstallRequest)
})

t.test('the reinstall example of the OVH guide', async (t) => {
  t.strictSame(parseInstallRequest(ovhReinstall), {
    source: 'reinstall',
    imageUrl: 'https://example.invalid/os.qcow2',
    imageType: 'qcow2',
    checksum: { type: 'sha256', hex: SHA256 },
    httpHeaders: [{ name: 'Authorization', value: 'Basic bG9naW46cGFzc3dvcmQ=' }],
    hostname: 'my-server',
    userData: '#cloud-config\npackages: [nginx]\n',
    metadata: { role: 'web' },
    sshKey: ED25519,
    efiBootloaderPath: '\\EFI\\BOOT\\BOOTX64.EFI',
    diskGroupId: 1,
  } satisfies InstallRequest)
})

t.test('both shapes give the same request for the same data', async (t) => {
  const { customizations: c } = ovhReinstall
  const fromStart = parseInstallRequest({
    templateName: 'byoi_64',
    details: { customHostname: c.hostname },
    userMetadata: [
      ...Object.entries(c)
        .filter(([key]) => !['hostname', 'httpHeaders', 'configDriveMetadata'].includes(key))
        .map(([key, value]) => ({ key, value })),
      { key: 'httpHeaders0Key', value: 'Authorization' },
      { key: 'httpHeaders0Value', value: c.httpHeaders.Authorization },
      { key: 'configDriveMetadata', value: JSON.stringify(c.configDriveMetadata) },
    ],
  })
  // install/start carries no disk group.
  t.strictSame({ ...fromStart, source: 'reinstall', diskGroupId: 1 }, parseInstallRequest(ovhReinstall))
})

t.test('unknown keys are ignored in both shapes', async (t) => {
  const pairs: Array<[string, string]> = [['imageURL', IMAGE.imageURL], ['imageType', 'qcow2'], ['imageFoo', 'x'], ['__proto__', '{}'], ['constructor', 'x']]
  const request = parseInstallRequest(start(pairs, { foo: 1, details: { bar: 2 } }))
  t.strictSame(request, { source: 'install-start', imageUrl: IMAGE.imageURL, imageType: 'qcow2', httpHeaders: [], metadata: {} })
  const other = parseInstallRequest({ ...(reinstall({ ...IMAGE, foo: [1] }) as object), storage: [], extra: null })
  t.equal(other.imageUrl, IMAGE.imageURL)
})

t.test('empty strings count as not given', async (t) => {
  const request = parseInstallRequest(reinstall({
    ...IMAGE, imageCheckSum: '', imageCheckSumType: '', hostname: '', sshKey: '', efiBootloaderPath: '', configDriveUserData: '',
  }))
  t.strictSame(request, { source: 'reinstall', imageUrl: IMAGE.imageURL, imageType: 'qcow2', httpHeaders: [], metadata: {} })
  t.same(refusal(start({ imageURL: '', imageType: 'raw' })), missing('Missing imageURL, it is required.'))
})

// ---- Shape and structure ----

t.test('refuses a body that is not an object', async (t) => {
  t.same(refusal(null), bad('Bad request body, expected: a JSON object.'))
  t.same(refusal([]), bad('Bad request body, expected: a JSON object.'))
})

t.test('refuses a body of neither shape', async (t) => {
  t.same(refusal({ templateName: 'byoi_64' }), missing('Missing userMetadata or customizations, it is required.'))
})

t.test('userMetadata wins when both shapes are present', async (t) => {
  const request = parseInstallRequest({ ...(start(IMAGE) as object), customizations: { imageURL: 'x' } })
  t.equal(request.source, 'install-start')
})

t.test('refuses a missing templateName or operatingSystem', async (t) => {
  t.same(refusal({ userMetadata: [] }), missing('Missing templateName, it is required.'))
  t.same(refusal({ customizations: IMAGE }), missing('Missing operatingSystem, it is required.'))
})

t.test('names the userMetadata entry that is malformed', async (t) => {
  const body = {
    templateName: 'byoi_64',
    userMetadata: [{ key: 'imageURL', value: 'https://x.invalid/' }, { key: 'imageType', value: 'raw' }, { key: 'sshKey', value: 7 }],
  }
  t.same(refusal(body), bad('Bad userMetadata[2].value, expected: a string.'))
  t.same(refusal({ templateName: 'byoi_64', userMetadata: [{ value: 'raw' }] }), missing('Missing userMetadata[0].key, it is required.'))
  t.same(refusal({ templateName: 'byoi_64', userMetadata: 'x' }), bad('Bad userMetadata, expected: an array.'))
  t.same(refusal({ templateName: 'byoi_64', details: { customHostname: 1 }, userMetadata: [] }), bad('Bad details.customHostname, expected: a string.'))
})

t.test('names the customizations field that is malformed', async (t) => {
  t.same(refusal(reinstall({ imageURL: 5 })), bad('Bad customizations.imageURL, expected: a string.'))
  t.same(refusal({ operatingSystem: 'byoi_64', customizations: [] }), bad('Bad customizations, expected: an object.'))
  t.same(refusal(reinstall({ ...IMAGE, httpHeaders: { 'X-Foo': 1 } })), bad('Bad customizations.httpHeaders.X-Foo, expected: a string.'))
  t.same(refusal({ ...(reinstall(IMAGE) as object), storage: {} }), bad('Bad storage, expected: an array.'))
})

t.test('storage[0].diskGroupId: a whole number from 1; the rest of storage ignored', async (t) => {
  const withStorage = (storage: unknown): unknown => ({ ...(reinstall(IMAGE) as object), storage })
  t.equal(parseInstallRequest(withStorage([{ diskGroupId: 2, hardwareRaid: [{ raidLevel: 1 }] }, { diskGroupId: 1 }])).diskGroupId, 2)
  t.notOk('diskGroupId' in parseInstallRequest(withStorage([])), 'none given: none (group 1 by default)')
  t.notOk('diskGroupId' in parseInstallRequest(withStorage([{ partitioning: { layout: [] } }])))
  t.same(refusal(withStorage([{ diskGroupId: 0 }])), bad('Bad storage[0].diskGroupId, expected: a whole number from 1.'))
  t.same(refusal(withStorage([{ diskGroupId: 1.5 }])), bad('Bad storage[0].diskGroupId, expected: a whole number.'))
  t.same(refusal(withStorage([{ diskGroupId: '2' }])), bad('Bad storage[0].diskGroupId, expected: a whole number.'))
  t.same(refusal(withStorage([{ diskGroupId: 2 ** 60 }])), bad('Bad storage[0].diskGroupId, expected: a whole number from 1.'))
  t.same(refusal(withStorage([{ diskGroupId: 1 }, { diskGroupId: -1 }])), bad('Bad storage[1].diskGroupId, expected: a whole number from 1.'))
  t.same(refusal(withStorage([7])), bad('Bad storage[0], expected: an object.'))
})

t.test('checkFixedDiskGroup: a fixed disk takes group 1 (or none) and refuses another, naming the disk', async (t) => {
  const request = (diskGroupId?: number): InstallRequest => ({
    source: 'reinstall', imageUrl: IMAGE.imageURL, imageType: 'raw', httpHeaders: [], metadata: {}, ...(diskGroupId === undefined ? {} : { diskGroupId }),
  })
  t.doesNotThrow(() => checkFixedDiskGroup(request(), '/dev/sda'))
  t.doesNotThrow(() => checkFixedDiskGroup(request(1), '/dev/sda'))
  t.throws(() => checkFixedDiskGroup(request(2), '/dev/sda'), {
    code: 'PAYLOAD_BAD_FIELD',
    message: 'Bad storage[0].diskGroupId, expected: 1 (the agent installs on /dev/sda, the disk it was given; ' +
      'disk group 2 is chosen only under serve --disk auto).',
  })
})

t.test('does not quote a key that may hold a secret in a structure error', async (t) => {
  const body = reinstall({ ...IMAGE, httpHeaders: { 'X-Ok': 'a', 'Authorization: Basic c2VjcmV0': 1 } })
  t.same(refusal(body), bad('Bad customizations.httpHeaders[#2], expected: a string.'))
})

// ---- Image ----

t.test('refuses a missing imageURL', async (t) => {
  t.same(refusal(start({ imageType: 'raw' })), missing('Missing imageURL, it is required.'))
  t.same(refusal(reinstall({ imageType: 'raw' })), missing('Missing imageURL, it is required.'))
})

t.test('refuses a missing imageType', async (t) => {
  t.same(refusal(start({ imageURL: IMAGE.imageURL })), missing('Missing imageType, it is required.'))
  t.same(refusal(reinstall({ imageURL: IMAGE.imageURL })), missing('Missing imageType, it is required.'))
})

t.test('refuses an imageURL that is not an absolute http(s) URL', async (t) => {
  for (const imageURL of ['not a url', '/relative/os.raw', 'ftp://example.invalid/os.raw', 'file:///etc/passwd', 'https://']) {
    t.same(refusal(start({ ...IMAGE, imageURL })), bad('Bad imageURL, expected: an http or https URL.'), imageURL)
  }
})

t.test('keeps an http URL with credentials, normalised', async (t) => {
  t.equal(parseInstallRequest(start({ ...IMAGE, imageURL: 'http://u:p@Example.invalid' })).imageUrl, 'http://u:p@example.invalid/')
})

t.test('refuses an imageType other than qcow2 or raw', async (t) => {
  for (const imageType of ['QCOW2', 'Raw', 'vmdk', 'iso']) {
    t.same(refusal(start({ ...IMAGE, imageType })), { code: 'BAD_IMAGE_FORMAT', message: 'Bad format image, expected: qcow2, raw.' }, imageType)
  }
})

// ---- Checksum ----

t.test('refuses an unknown imageCheckSumType', async (t) => {
  for (const imageCheckSumType of ['crc32', 'sha-256', 'sha384']) {
    t.same(refusal(start({ ...IMAGE, imageCheckSum: SHA256, imageCheckSumType })),
      { code: 'BAD_CHECKSUM_TYPE', message: 'Bad checkSumType, expected: sha1, sha256, md5, sha512.' }, imageCheckSumType)
  }
  t.same(refusal(reinstall({ ...IMAGE, imageCheckSumType: 'crc32' })).code, 'BAD_CHECKSUM_TYPE', 'even without a checksum')
})

t.test('refuses a checksum without its type', async (t) => {
  t.same(refusal(start({ ...IMAGE, imageCheckSum: SHA256 })), missing('Missing imageCheckSumType, it is required.'))
})

t.test('refuses a checksum of the wrong length for its type', async (t) => {
  t.same(refusal(start({ ...IMAGE, imageCheckSum: SHA256, imageCheckSumType: 'sha512' })),
    bad('Bad imageCheckSum, expected: 128 hexadecimal digits for sha512.'))
  t.same(refusal(reinstall({ ...IMAGE, imageCheckSum: SHA256, imageCheckSumType: 'md5' })),
    bad('Bad imageCheckSum, expected: 32 hexadecimal digits for md5.'))
})

t.test('refuses a checksum that is not hexadecimal', async (t) => {
  t.same(refusal(start({ ...IMAGE, imageCheckSum: 'g'.repeat(40), imageCheckSumType: 'sha1' })),
    bad('Bad imageCheckSum, expected: 40 hexadecimal digits for sha1.'))
  t.same(refusal(start({ ...IMAGE, imageCheckSum: `${SHA256.slice(0, 32)} ${SHA256.slice(33)}`, imageCheckSumType: 'sha256' })),
    bad('Bad imageCheckSum, expected: 64 hexadecimal digits for sha256.'))
})

t.test('normalises checksum type and digits to lower case, trimmed', async (t) => {
  const request = parseInstallRequest(start({ ...IMAGE, imageCheckSum: ` ${SHA512.toUpperCase()}\n`, imageCheckSumType: 'SHA512' }))
  t.strictSame(request.checksum, { type: 'sha512', hex: SHA512 })
})

t.test('accepts a checksum type without a checksum, and checks nothing', async (t) => {
  t.equal(parseInstallRequest(start({ ...IMAGE, imageCheckSumType: 'sha256' })).checksum, undefined)
})

// ---- HTTP headers ----

t.test('orders header pairs by N', async (t) => {
  const request = parseInstallRequest(start({
    ...IMAGE,
    httpHeaders10Key: 'X-Ten', httpHeaders10Value: '10',
    httpHeaders2Key: 'X-Two', httpHeaders2Value: '2',
    httpHeaders0Value: '0', httpHeaders0Key: 'X-Zero',
    httpHeaders007Key: 'X-Seven', httpHeaders007Value: '',
  }))
  t.strictSame(request.httpHeaders, [
    { name: 'X-Zero', value: '0' }, { name: 'X-Two', value: '2' }, { name: 'X-Seven', value: '' }, { name: 'X-Ten', value: '10' },
  ])
})

t.test('refuses a header Key without its Value', async (t) => {
  t.same(refusal(start({ ...IMAGE, httpHeaders3Key: 'X-Foo' })), missing('Missing httpHeaders3Value, it is required.'))
  t.same(refusal(start({ ...IMAGE, [`httpHeaders${'9'.repeat(100_000)}Key`]: 'X-Foo' })),
    missing(`Missing httpHeaders${'9'.repeat(29)}…${'9'.repeat(15)}Value, it is required.`), 'an absurd N is shortened')
})

t.test('refuses a header Value without its Key', async (t) => {
  t.same(refusal(start({ ...IMAGE, httpHeaders1Value: 'secret' })), missing('Missing httpHeaders1Key, it is required.'))
})

t.test('refuses a header name that is not a token', async (t) => {
  for (const name of ['X Foo', 'X-Foo:', '', 'Authorization: Basic x', 'Ä']) {
    t.same(refusal(start({ ...IMAGE, httpHeaders0Key: name, httpHeaders0Value: 'v' })), bad('Bad httpHeaders0Key, expected: an HTTP header name.'), name)
  }
  t.same(refusal(reinstall({ ...IMAGE, httpHeaders: { 'X-Ok': 'a', 'Authorization: Basic c2VjcmV0': 'b' } })),
    bad('Bad httpHeaders[#2], expected: an HTTP header name.'))
})

t.test('refuses a header value with a line break or a control character', async (t) => {
  for (const value of ['a\r\nX-Injected: 1', 'a\nb', 'a\0b', 'a\x7fb', 'a\x01b', 'emoji \u{1F600}']) {
    t.same(refusal(start({ ...IMAGE, httpHeaders0Key: 'X-Foo', httpHeaders0Value: value })),
      bad('Bad httpHeaders0Value, expected: a header value of Latin-1 text without line breaks or control characters.'), JSON.stringify(value))
  }
  t.same(refusal(reinstall({ ...IMAGE, httpHeaders: { 'X-Foo': 'a\r\nb' } })),
    bad('Bad httpHeaders.X-Foo, expected: a header value of Latin-1 text without line breaks or control characters.'))
  t.equal(parseInstallRequest(reinstall({ ...IMAGE, httpHeaders: { 'X-Foo': 'a\tb caf\u00e9' } })).httpHeaders[0]?.value, 'a\tb caf\u00e9')
})

t.test('refuses headers the agent sets itself', async (t) => {
  for (const name of ['Host', 'content-length', 'Transfer-Encoding', 'Connection', 'RANGE', 'If-Range', 'Accept-Encoding', 'Upgrade']) {
    t.same(refusal(start({ ...IMAGE, httpHeaders0Key: name, httpHeaders0Value: 'x' })),
      bad('Bad httpHeaders0Key, expected: a header the agent does not set itself.'), name)
  }
  t.same(refusal(reinstall({ ...IMAGE, httpHeaders: { Host: 'x' } })), bad('Bad httpHeaders.Host, expected: a header the agent does not set itself.'))
})

t.test('refuses a header name given twice, in any case', async (t) => {
  t.same(refusal(start({ ...IMAGE, httpHeaders0Key: 'X-Foo', httpHeaders0Value: 'a', httpHeaders1Key: 'x-foo', httpHeaders1Value: 'b' })),
    bad('Bad httpHeaders1Key, expected: a header name given once.'))
  t.same(refusal(reinstall({ ...IMAGE, httpHeaders: { 'X-Foo': 'a', 'x-FOO': 'b' } })),
    bad('Bad httpHeaders.x-FOO, expected: a header name given once.'))
})

// ---- userMetadata keys ----

t.test('refuses a userMetadata key given twice', async (t) => {
  t.same(refusal(start([['imageURL', IMAGE.imageURL], ['imageType', 'raw'], ['imageURL', 'https://other.invalid/']])),
    bad('Bad userMetadata key imageURL, expected: each key once.'))
  t.same(refusal(start([['imageURL', IMAGE.imageURL], ['a b', '1'], ['imageType', 'raw'], ['a b', '2']])),
    bad('Bad userMetadata[3].key, expected: each key once.'))
})

// ---- Host name ----

t.test('refuses a host name that is not RFC 1123', async (t) => {
  const names = ['my_host', '-host', 'host-', 'a..b', '.', 'x'.repeat(64), `${'a'.repeat(63)}.`.repeat(4) + 'abc', 'h\u00f4te', 'host name']
  for (const customHostname of names) {
    t.same(refusal(start(IMAGE, { details: { customHostname } })),
      bad('Bad details.customHostname, expected: a host name of letters, digits and hyphens (RFC 1123).'), customHostname)
  }
  t.same(refusal(reinstall({ ...IMAGE, hostname: 'my_server' })),
    bad('Bad customizations.hostname, expected: a host name of letters, digits and hyphens (RFC 1123).'))
})

t.test('accepts a fully qualified host name, dropping a trailing dot', async (t) => {
  t.equal(parseInstallRequest(reinstall({ ...IMAGE, hostname: 'web-1.Example.com.' })).hostname, 'web-1.Example.com')
  t.equal(parseInstallRequest(reinstall({ ...IMAGE, hostname: 'x'.repeat(63) })).hostname, 'x'.repeat(63))
})

// ---- ConfigDrive ----

t.test('keeps user data verbatim, from userMetadata too', async (t) => {
  const userData = '  #cloud-config\r\nruncmd: [ "echo hi" ]\n\n'
  t.equal(parseInstallRequest(start({ ...IMAGE, configDriveUserData: userData })).userData, userData)
  t.equal(parseInstallRequest(reinstall({ ...IMAGE, configDriveUserData: userData })).userData, userData)
})

t.test('refuses user data over 16 MiB', async (t) => {
  t.same(refusal(reinstall({ ...IMAGE, configDriveUserData: 'x'.repeat(16 * 1024 * 1024 + 1) })),
    bad('Bad configDriveUserData, expected: at most 16 MiB.'))
})

t.test('reads configDriveMetadata from a JSON string in userMetadata', async (t) => {
  const request = parseInstallRequest(start({ ...IMAGE, configDriveMetadata: '{"role":"web","constructor":"x"}' }))
  t.strictSame(request.metadata, { role: 'web', constructor: 'x' })
  t.equal(Object.getPrototypeOf(request.metadata), Object.prototype)
})

t.test('refuses configDriveMetadata that is not a JSON object of strings', async (t) => {
  for (const value of ['not json', '[]', '"web"', 'null', '{"n":1}', '{"a":{"b":"c"}}']) {
    t.same(refusal(start({ ...IMAGE, configDriveMetadata: value })), bad('Bad configDriveMetadata, expected: a JSON object of strings.'), value)
  }
  t.same(refusal(reinstall({ ...IMAGE, configDriveMetadata: { n: 1 } })), bad('Bad customizations.configDriveMetadata.n, expected: a string.'))
})

t.test('refuses a __proto__ key in configDriveMetadata, in both shapes', async (t) => {
  const expected = bad('Bad configDriveMetadata, expected: a JSON object of strings without a __proto__ key.')
  t.same(refusal(start({ ...IMAGE, configDriveMetadata: '{"__proto__":"x"}' })), expected)
  t.same(refusal(JSON.parse(JSON.stringify(reinstall(IMAGE)).replace('}}', ',"configDriveMetadata":{"__proto__":"x"}}}'))), expected)
  t.equal(({} as Record<string, unknown>)['x'], undefined, 'Object.prototype untouched')
})

// ---- sshKey ----

t.test('accepts OpenSSH public keys, trimmed, from userMetadata too', async (t) => {
  t.equal(parseInstallRequest(start({ ...IMAGE, sshKey: `${ED25519}\n` })).sshKey, ED25519)
  t.equal(parseInstallRequest(reinstall({ ...IMAGE, sshKey: ECDSA384 })).sshKey, ECDSA384)
})

t.test('refuses an sshKey that is not an OpenSSH public key', async (t) => {
  const [, blob = ''] = ED25519.split(' ')
  const keys = [
    'hello',
    `ssh-foo ${blob}`,
    `ssh-rsa ${blob}`, // the blob says ssh-ed25519
    `ssh-ed25519 ${blob.slice(0, 10)}`, // truncated
    `ssh-ed25519 ${blob} a\nssh-ed25519 ${blob}`, // two lines
    '-----BEGIN OPENSSH PRIVATE KEY-----',
    `ssh-ed25519 ${blob}!`,
  ]
  for (const sshKey of keys) {
    t.same(refusal(reinstall({ ...IMAGE, sshKey })), bad('Bad sshKey, expected: an OpenSSH public key.'), sshKey)
  }
})

// ---- efiBootloaderPath ----

t.test('accepts an EFI path in both shapes', async (t) => {
  t.equal(parseInstallRequest(start({ ...IMAGE, efiBootloaderPath: '\\EFI\\debian\\shimx64.efi' })).efiBootloaderPath, '\\EFI\\debian\\shimx64.efi')
})

t.test('refuses an efiBootloaderPath that is not a UEFI path to an .efi file', async (t) => {
  const paths = ['EFI\\BOOT\\BOOTX64.EFI', '/EFI/BOOT/BOOTX64.EFI', '\\EFI\\BOOT\\BOOTX64', '\\EFI\\..\\BOOTX64.EFI', '\\EFI\\\\BOOTX64.EFI',
    '\\EFI/BOOT\\BOOTX64.EFI', `\\${'a'.repeat(252)}.efi`, '\\EFI\\BOOT\\BOOT\nX64.EFI']
  for (const efiBootloaderPath of paths) {
    t.same(
      refusal(reinstall({ ...IMAGE, efiBootloaderPath })),
      bad('Bad efiBootloaderPath, expected: a path like \\EFI\\BOOT\\BOOTX64.EFI.'),
      efiBootloaderPath,
    )
  }
})

// ---- scrub (ours) ----

t.test('scrub: not asked, asked with the defaults, or with paths, in both shapes; paths normalized', async (t) => {
  t.equal(parseInstallRequest(start(IMAGE)).scrub, undefined)
  t.equal(parseInstallRequest(start({ ...IMAGE, scrub: 'false' })).scrub, undefined)
  t.equal(parseInstallRequest(reinstall({ ...IMAGE, scrub: false })).scrub, undefined)
  t.same(parseInstallRequest(start({ ...IMAGE, scrub: 'true' })).scrub, { paths: [] })
  t.same(parseInstallRequest(reinstall({ ...IMAGE, scrub: true })).scrub, { paths: [] })
  t.same(parseInstallRequest(reinstall({ ...IMAGE, scrub: {} })).scrub, { paths: [] })
  const paths = ['/opt/app', '//etc//app.conf/', '/srv/my app']
  t.same(parseInstallRequest(start({ ...IMAGE, scrub: JSON.stringify({ paths }) })).scrub, { paths: ['/opt/app', '/etc/app.conf', '/srv/my app'] })
  t.same(parseInstallRequest(reinstall({ ...IMAGE, scrub: { paths } })).scrub, { paths: ['/opt/app', '/etc/app.conf', '/srv/my app'] })
})

t.test('scrub: refuses what is not true, false or { paths }, and paths that are not absolute, are /, or climb', async (t) => {
  const expected = 'Bad scrub, expected: true, false, or an object { "paths": [absolute paths] }.'
  t.same(refusal(start({ ...IMAGE, scrub: 'yes' })), bad(expected))
  t.same(refusal(start({ ...IMAGE, scrub: '[1]' })), bad(expected))
  t.same(refusal(start({ ...IMAGE, scrub: JSON.stringify({ paths: [], more: 1 }) })), bad(expected))
  t.same(refusal(reinstall({ ...IMAGE, scrub: 'true' })).code, 'PAYLOAD_BAD_FIELD', 'reinstall takes a boolean, not a string')
  t.same(refusal(reinstall({ ...IMAGE, scrub: { paths: 'opt' } })).code, 'PAYLOAD_BAD_FIELD')
  const cases: Array<[unknown, string]> = [
    ['opt/app', 'an absolute path'],
    [7, 'an absolute path'],
    ['/', 'a path below /, not / itself'],
    ['///', 'a path below /, not / itself'],
    ['/opt/../etc', 'a path without . or .. components'],
    ['/opt/./app', 'a path without . or .. components'],
    ['/a\0b', 'an absolute path'],
  ]
  for (const [path, expectation] of cases) {
    t.same(refusal(start({ ...IMAGE, scrub: JSON.stringify({ paths: ['/ok', path] }) })), bad(`Bad scrub.paths[1], expected: ${expectation}.`), String(path))
  }
  t.same(refusal(start({ ...IMAGE, scrub: JSON.stringify({ paths: Array.from({ length: 65 }, (_, i) => `/p${i}`) }) })).code, 'PAYLOAD_BAD_FIELD')
})

// ---- Safety ----

t.test('never shows a secret in a message', async (t) => {
  const secrets = ['hunter2-password', 'c2VjcmV0LXRva2Vu', 'sig=SIGNATURE123']
  const url = `https://user:${secrets[0]}@example.invalid/os.raw?${secrets[2]}`
  const bodies = [
    start({ imageURL: url, imageType: 'vmdk' }),
    start({ imageURL: url.replace('https', 'ftp'), imageType: 'raw' }),
    start({ imageURL: url.replace('example.invalid', 'exa mple.invalid'), imageType: 'raw' }),
    start({ imageURL: url, imageType: 'raw', httpHeaders0Key: 'Authorization', httpHeaders0Value: `Basic ${secrets[1]}\r\n` }),
    start({ imageURL: url, imageType: 'raw', httpHeaders0Value: `Basic ${secrets[1]}` }),
    start({ imageURL: url, imageType: 'raw', httpHeaders0Key: `Authorization: Basic ${secrets[1]}`, httpHeaders0Value: '' }),
    reinstall({ imageURL: url, imageType: 'raw', httpHeaders: { Authorization: `Basic ${secrets[1]}\n` } }),
    reinstall({ imageURL: url, imageType: 'raw', httpHeaders: { [`Authorization: Basic ${secrets[1]}`]: 'x' } }),
    reinstall({ imageURL: url, imageType: 'raw', httpHeaders: { [`Authorization: Basic ${secrets[1]}`]: 1 } }),
    reinstall({ imageURL: url, imageType: 'raw', httpHeaders: { Authorization: 'a', authorization: secrets[1] } }),
    reinstall({ imageURL: url, imageType: 'raw', imageCheckSum: secrets[1], imageCheckSumType: 'md5' }),
  ]
  for (const [index, body] of bodies.entries()) {
    const { message } = refusal(body)
    for (const secret of secrets) t.notOk(message.includes(secret), `body ${index}: ${message}`)
  }
})

t.test('odd bodies give a payload refusal, never another error', async (t) => {
  let deep: unknown = 'x'
  for (let i = 0; i < 100_000; i++) deep = [deep]
  const deepJson = '['.repeat(100_000) + ']'.repeat(100_000)
  const bodies: unknown[] = [
    null, undefined, 42, 'x', true, [], [start(IMAGE)], {},
    { userMetadata: 'x' }, { userMetadata: [null] }, { templateName: 'byoi_64', userMetadata: [null] },
    { templateName: 'byoi_64', userMetadata: [[]] }, { templateName: 1, userMetadata: [] },
    { customizations: [] }, { operatingSystem: 'byoi_64', customizations: null }, { operatingSystem: 'byoi_64', customizations: 'x' },
    { templateName: 'byoi_64', userMetadata: deep }, { templateName: 'byoi_64', userMetadata: [deep] },
    reinstall({ ...IMAGE, configDriveMetadata: deep }), reinstall({ ...IMAGE, httpHeaders: deep }),
    start({ ...IMAGE, configDriveMetadata: deepJson }),
    JSON.parse('{"__proto__":{"userMetadata":[]},"templateName":"byoi_64"}'),
    JSON.parse('{"templateName":"byoi_64","userMetadata":[{"key":"imageURL","value":"x","__proto__":{"value":1}}]}'),
    Object.create({ userMetadata: [] }),
    start({ imageURL: `https://${'a'.repeat(1_000_000)}`, imageType: 'raw', [`httpHeaders${'9'.repeat(100_000)}Key`]: 'X' }),
  ]
  for (const [index, body] of bodies.entries()) {
    let thrown: unknown
    try {
      parseInstallRequest(body)
    } catch (err) {
      thrown = err
    }
    t.ok(isInstallError(thrown) && /^PAYLOAD_/.test(thrown.code), `body ${index}: ${isInstallError(thrown) ? thrown.message : String(thrown)}`)
  }
})

// ---- Schemas ----

t.test('the schemas are found and exported', async (t) => {
  t.ok(existsSync(join(schemasDir(), 'install-start.json')))
  t.equal(installStartSchema['title'], 'Install start request')
  t.equal(reinstallSchema['title'], 'Reinstall request')
})
