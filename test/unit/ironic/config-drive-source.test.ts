import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { buildConfigDrive } from '../../../agent/configdrive/index.js'
import { configDriveFromIronic } from '../../../agent/ironic/config-drive-source.js'
import { prepareConfigDrive } from '../../../agent/install/config-drive-step.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { tempDir } from '../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)

/** An ISO as Ironic's conductor makes it (openstacksdk's configdrive.build runs this genisoimage). */
function ironicIso (label = 'config-2'): Buffer {
  const dir = join(tmp.path, `tree-${label}`)
  for (const folder of ['openstack/2012-08-10', 'openstack/latest']) {
    mkdirSync(join(dir, folder), { recursive: true })
    writeFileSync(join(dir, folder, 'meta_data.json'), JSON.stringify({ uuid: 'node-uuid-1', hostname: 'h1', name: 'node-1' }))
    writeFileSync(join(dir, folder, 'user_data'), '#cloud-config\nhostname: h1\n')
  }
  const out = join(tmp.path, `cd-${label}.iso`)
  const options = ['-ldots', '-allow-lowercase', '-allow-multidot', '-l', '-publisher', 'metalsmith', '-quiet', '-J', '-r']
  execFileSync('genisoimage', ['-o', out, ...options, '-V', label, dir])
  return readFileSync(out)
}

const failure = async (value: unknown): Promise<string> => {
  try {
    await configDriveFromIronic(value, 'n')
  } catch (err) {
    if (isInstallError(err)) return `${err.code}: ${String((err.cause as Error | undefined)?.message)}`
    throw err
  }
  return 'accepted'
}

t.test('the conductor\'s gzip+base64 ISO: kept as it came, its files read', async (t) => {
  const iso = ironicIso()
  const given = await configDriveFromIronic(gzipSync(iso).toString('base64'), 'n')
  t.ok(given?.iso?.equals(iso), 'the ISO byte for byte')
  t.same(given?.files.map((f) => f.path).sort(), [
    'openstack/2012-08-10/meta_data.json', 'openstack/2012-08-10/user_data', 'openstack/latest/meta_data.json', 'openstack/latest/user_data',
  ])
  t.equal(await configDriveFromIronic(undefined, 'n'), undefined)
  t.equal(await configDriveFromIronic('', 'n'), undefined)
  // On a 512-byte disk the install writes that ISO; on 4Kn the same files go into a FAT, checked by mtools.
  const request = { metadata: {}, givenConfigDrive: given }
  t.ok(buildConfigDrive(request, { sectorBytes: 512, partitionBytes: 64 * 1024 * 1024 }).image.equals(iso))
  const fat = buildConfigDrive(request, { sectorBytes: 4096, partitionBytes: 64 * 1024 * 1024 })
  t.equal(fat.filesystem, 'fat')
  const fatFile = join(tmp.path, 'cd.fat')
  writeFileSync(fatFile, fat.image)
  const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' }
  t.equal(execFileSync('mtype', ['-i', fatFile, '::/openstack/latest/user_data'], { env, encoding: 'utf8' }), '#cloud-config\nhostname: h1\n')
  t.match(execFileSync('mlabel', ['-s', '-i', fatFile, '::'], { env, encoding: 'utf8' }), /config-2/i)
  const install = { source: 'install-start' as const, imageUrl: 'http://x/', imageType: 'raw' as const, httpHeaders: [], metadata: {}, givenConfigDrive: given }
  t.equal(prepareConfigDrive(install, 512).uuid, 'node-uuid-1', 'the instance id reported is the drive\'s own')
})

t.test('a URL to the same text, and a body that is not base64 (the image itself)', async (t) => {
  const iso = ironicIso()
  const server = createServer((req, res) => {
    if (req.url === '/cd.gz.b64') res.end(gzipSync(iso).toString('base64'))
    else if (req.url === '/cd.iso') res.end(iso)
    else res.writeHead(404).end('no')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.ok((await configDriveFromIronic(`${base}/cd.gz.b64`, 'n'))?.iso?.equals(iso))
  t.ok((await configDriveFromIronic(`${base}/cd.iso`, 'n'))?.iso?.equals(iso))
  const missing = await failure(`${base}/missing?temp_url_sig=secret`)
  t.equal(missing, `CONFIGDRIVE_FAILED: fetching it from ${base}/missing?temp_url_sig=REDACTED answered HTTP 404`)
})

t.test('contents given as an object become the files cloud-init reads', async (t) => {
  const given = await configDriveFromIronic({ meta_data: { hostname: 'h2' }, user_data: '#!/bin/sh\necho hi\n', network_data: { links: [] } }, 'node-uuid-2')
  t.same(given?.files.map((f) => [f.path, f.data.toString()]), [
    ['openstack/latest/meta_data.json', '{"uuid":"node-uuid-2","hostname":"h2"}'],
    ['openstack/latest/user_data', '#!/bin/sh\necho hi\n'],
    ['openstack/latest/network_data.json', '{"links":[]}'],
  ])
  t.equal(given?.iso, undefined)
})

t.test('what cannot be a config drive is CONFIGDRIVE_FAILED, said plainly', async (t) => {
  const other = await failure(gzipSync(ironicIso('OTHER')).toString('base64'))
  t.equal(other, 'CONFIGDRIVE_FAILED: the config drive\'s ISO 9660 volume is labelled "OTHER", not config-2')
  t.equal(await failure(Buffer.from('not gzip at all').toString('base64')), 'CONFIGDRIVE_FAILED: the config drive is base64 but not gzip data')
  const bomb = await failure(gzipSync(Buffer.alloc(65 * 1024 * 1024)).toString('base64'))
  t.match(bomb, /^CONFIGDRIVE_FAILED: .*(larger|exceed|64 MiB)/i, 'a gzip bomb stops at 64 MiB')
  t.match(await failure('!!!! not base64 and not an ISO'), /^CONFIGDRIVE_FAILED: /)
  t.equal(await failure(42), 'CONFIGDRIVE_FAILED: the config drive is a number, expected a string or an object')
  t.equal(await failure({ meta_data: 'x' }), 'CONFIGDRIVE_FAILED: the config drive\'s meta_data is not an object')
})
