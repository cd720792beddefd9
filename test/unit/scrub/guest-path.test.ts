import t from 'tap'
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { resolveGuestPath } from '../../../agent/scrub/guest-path.js'
import { scrubGuest } from '../../../agent/scrub/scrub-guest.js'
import { tempDir } from '../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)

/** A guest root with links that, followed by the host's kernel, would lead out of it. */
function guest (name: string): { root: string; host: string } {
  const root = join(tmp.path, name, 'root')
  const host = join(tmp.path, name, 'host')
  mkdirSync(join(root, 'etc', 'ssh'), { recursive: true })
  mkdirSync(join(root, 'var', 'lib'), { recursive: true })
  mkdirSync(join(host, 'etc'), { recursive: true })
  writeFileSync(join(host, 'etc', 'passwd'), 'host\n')
  writeFileSync(join(host, 'etc', 'machine-id'), 'host-id\n')
  writeFileSync(join(root, 'etc', 'passwd'), 'guest\n')
  symlinkSync('/etc', join(root, 'abs')) // absolute: the guest's /etc
  symlinkSync('../../../../../../..', join(root, 'var', 'lib', 'up')) // climbs: stops at the guest's root
  symlinkSync(host, join(root, 'hostlink')) // a host path: not one in the guest
  symlinkSync('loop-b', join(root, 'loop-a'))
  symlinkSync('loop-a', join(root, 'loop-b'))
  return { root, host }
}

t.test('links are followed inside the guest, as under chroot: never out of it', async (t) => {
  const { root } = guest('resolve')
  t.same(await resolveGuestPath(root, '/abs/passwd'), { kind: 'found', hostPath: join(root, 'etc', 'passwd'), exists: true })
  t.same(await resolveGuestPath(root, '/var/lib/up/etc/passwd'), { kind: 'found', hostPath: join(root, 'etc', 'passwd'), exists: true })
  t.same(await resolveGuestPath(root, '/../../etc/passwd'), { kind: 'found', hostPath: join(root, 'etc', 'passwd'), exists: true })
  t.same(await resolveGuestPath(root, '/hostlink/etc/passwd'), { kind: 'unreachable', reason: `/${tmp.path.split('/')[1] ?? ''} does not exist` })
  t.same(await resolveGuestPath(root, '/loop-a/x'), { kind: 'unreachable', reason: 'too many levels of symbolic links' })
  t.same(await resolveGuestPath(root, '/etc/passwd/x'), { kind: 'unreachable', reason: '/etc/passwd is not a folder' })
  t.same(await resolveGuestPath(root, '/etc/none'), { kind: 'found', hostPath: join(root, 'etc', 'none'), exists: false })
  t.same(await resolveGuestPath(root, '/abs'), { kind: 'found', hostPath: join(root, 'abs'), exists: true }, 'the last link is not followed')
  t.same(await resolveGuestPath(root, '/abs', { followLast: true }), { kind: 'found', hostPath: join(root, 'etc'), exists: true })
  t.same(await resolveGuestPath(root, '/'), { kind: 'found', hostPath: root, exists: true })
})

t.test('scrubGuest: a guest whose folders are links to host paths, or to its root, touches nothing of the host', async (t) => {
  const { root, host } = guest('scrub')
  // /var/log and /etc/ssh as links to the host's folders (absolute: inside the guest they name nothing).
  symlinkSync(join(host, 'etc'), join(root, 'var', 'log'))
  symlinkSync('/', join(root, 'var', 'lib', 'cloud')) // the guest's own root: not a folder to empty
  writeFileSync(join(root, 'etc', 'ssh', 'ssh_host_rsa_key'), 'k')
  symlinkSync(join(host, 'etc', 'machine-id'), join(root, 'etc', 'machine-id'))
  const notes = await scrubGuest(root, { paths: ['/hostlink/etc', '/abs/passwd'] })
  t.same(notes, [
    'scrub: SSH host keys removed from /etc/ssh (new ones are made at first boot)',
    `scrub: /hostlink/etc not in the image (/${tmp.path.split('/')[1] ?? ''} does not exist)`,
    'scrub: /abs/passwd removed',
  ])
  t.equal(readFileSync(join(host, 'etc', 'passwd'), 'utf8'), 'host\n', 'the host\'s files whole')
  t.equal(readFileSync(join(host, 'etc', 'machine-id'), 'utf8'), 'host-id\n', 'a machine-id that is a link is not followed')
  t.same(readdirSync(join(root, 'etc')).sort(), ['machine-id', 'ssh'], 'the guest\'s /etc/passwd removed through its link')
  t.ok(readdirSync(root).includes('abs'), 'the guest\'s root kept')
})

t.test('scrubGuest: a path that resolves to the guest\'s root is refused, nothing removed', async (t) => {
  const { root } = guest('root-link')
  await t.rejects(scrubGuest(root, { paths: ['/abs/..'] }), /is the image's root/)
  t.ok(readdirSync(root).includes('etc'), 'the guest whole')
})
