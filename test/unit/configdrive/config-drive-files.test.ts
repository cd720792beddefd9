import t from 'tap'
import { configDriveFiles } from '../../../agent/configdrive/config-drive-files.js'

const UUID = '0f3b1c2d-4e5f-4a6b-8c7d-9e0f1a2b3c4d'

function byPath (files: ReturnType<typeof configDriveFiles>): Map<string, Buffer> {
  return new Map(files.map((file) => [file.path, file.data]))
}

/** openstack/latest/meta_data.json, parsed. */
function metaData (files: ReturnType<typeof configDriveFiles>): Record<string, unknown> {
  return JSON.parse(byPath(files).get('openstack/latest/meta_data.json')?.toString('utf8') ?? '') as Record<string, unknown>
}

t.test('a full request: hostname, user data, metadata and an SSH key', async (t) => {
  const files = configDriveFiles({
    hostname: 'web-1',
    userData: '#cloud-config\nruncmd:\n  - echo "héllo" > /etc/motd\n',
    metadata: { role: 'web', tier: 'front' },
    sshKey: 'ssh-ed25519 AAAAC3Nza me@example.invalid',
  }, { uuid: UUID })
  const map = byPath(files)
  t.same([...map.keys()], ['openstack/latest/meta_data.json', 'openstack/latest/user_data', 'openstack/latest/vendor_data.json'])
  t.same(JSON.parse(map.get('openstack/latest/meta_data.json')?.toString('utf8') ?? ''), {
    uuid: UUID,
    hostname: 'web-1',
    name: 'web-1',
    launch_index: 0,
    meta: { role: 'web', tier: 'front' },
    public_keys: { default: 'ssh-ed25519 AAAAC3Nza me@example.invalid' },
  })
  t.equal(map.get('openstack/latest/user_data')?.toString('utf8'), '#cloud-config\nruncmd:\n  - echo "héllo" > /etc/motd\n', 'user data verbatim, UTF-8')
  t.equal(map.get('openstack/latest/vendor_data.json')?.toString('utf8'), '{}')
})

t.test('a minimal request still makes a drive with a uuid', async (t) => {
  const files = configDriveFiles({ metadata: {} }, { uuid: UUID })
  const map = byPath(files)
  t.same([...map.keys()], ['openstack/latest/meta_data.json', 'openstack/latest/vendor_data.json'], 'no user_data file without user data')
  t.same(JSON.parse(map.get('openstack/latest/meta_data.json')?.toString('utf8') ?? ''), { uuid: UUID, launch_index: 0 })
})

t.test('without options.uuid, a fresh random v4 UUID each time', async (t) => {
  const meta = (): { uuid: string } => metaData(configDriveFiles({ metadata: {} })) as { uuid: string }
  const a = meta().uuid
  const b = meta().uuid
  t.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  t.not(a, b)
})

t.test('deterministic given the uuid', async (t) => {
  const request = { hostname: 'h', userData: 'x', metadata: { a: '1' }, sshKey: 'k' }
  t.same(configDriveFiles(request, { uuid: UUID }), configDriveFiles(request, { uuid: UUID }))
})

t.test('sshKey alone becomes public_keys; metadata alone becomes meta', async (t) => {
  const withKey = metaData(configDriveFiles({ metadata: {}, sshKey: 'ssh-rsa AAAA' }, { uuid: UUID }))
  t.same(withKey.public_keys, { default: 'ssh-rsa AAAA' })
  t.notOk('meta' in withKey)
  const withMeta = metaData(configDriveFiles({ metadata: { k: 'v' } }, { uuid: UUID }))
  t.same(withMeta.meta, { k: 'v' })
  t.notOk('public_keys' in withMeta)
  t.notOk('hostname' in withMeta)
})

t.test('network_data.json only when given; only the latest/ folder', async (t) => {
  const network = {
    links: [{ id: 'eth0', type: 'phy', ethernet_mac_address: '52:54:00:12:34:56' }],
    networks: [{ id: 'n0', link: 'eth0', type: 'ipv4_dhcp' }],
    services: [],
  }
  const files = configDriveFiles({ metadata: {}, userData: '' }, { uuid: UUID, networkData: network })
  const map = byPath(files)
  t.same(JSON.parse(map.get('openstack/latest/network_data.json')?.toString('utf8') ?? ''), network)
  t.equal(map.get('openstack/latest/user_data')?.length, 0, 'an empty user data given is written empty')
  t.ok(files.every((file) => file.path.startsWith('openstack/latest/')), 'no dated folder, which would hide latest/')
})

t.test('an empty uuid is refused', async (t) => {
  t.throws(() => configDriveFiles({ metadata: {} }, { uuid: '' }), RangeError)
})
