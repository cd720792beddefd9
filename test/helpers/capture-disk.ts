import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, mkdirSync, openSync, readFileSync, symlinkSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'

/**
 * A disk to capture, as a baked server's: GPT, partition 1 an ext4 filesystem (files kept, files
 * deleted whose bytes stay in its free blocks), partition 2 raw random bytes, random bytes past
 * the partitions. `reference` is the disk as a capture must give it back: the ext4's free blocks
 * (dumpe2fs's list, the referee) zeroed.
 */
export const MiB = 1024 * 1024
export const PART1_START = MiB // sector 2048
export const PART1_BYTES = 96 * MiB
export const PART2_START = PART1_START + PART1_BYTES
export const PART2_BYTES = 16 * MiB
export const DISK_BYTES = 160 * MiB

export const KEPT_MARKER = 'KEPT-DATA-0123456789;'
export const DELETED_MARKERS = ['DELETED-SECRET-abcdef;', 'DELETED-LOG-ghijkl;']

function marker (text: string, bytes: number): Buffer {
  return Buffer.from(text.repeat(Math.ceil(bytes / text.length)).slice(0, bytes))
}

/** The free blocks dumpe2fs lists for the filesystem in `image`, as byte ranges of that image. */
export function dumpe2fsFree (image: string): Array<[number, number]> {
  const out = execFileSync('dumpe2fs', [image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  const blockBytes = Number(/^Block size:\s+(\d+)/m.exec(out)?.[1])
  const ranges: Array<[number, number]> = []
  for (const match of out.matchAll(/^\s+Free blocks: (.+)$/gm)) {
    for (const part of (match[1] ?? '').split(',').map((p) => p.trim())) {
      const [from, to] = part.split('-').map(Number) as [number, number | undefined]
      ranges.push([from * blockBytes, ((to ?? from) + 1) * blockBytes])
    }
  }
  return ranges
}

export interface CaptureDisk {
  /** The disk file. */
  path: string
  /** Its filesystem, apart (partition 1's bytes). */
  fsImage: string
  /** The disk with partition 1's free blocks zeroed. */
  reference: string
  /** Bytes of those free blocks. */
  freeBytes: number
}

/**
 * With `os`, partition 1 is also a system's root as a baked server leaves it, for the scrub: an
 * /etc/os-release, a machine-id, SSH host keys, cloud-init's instance state, a DHCP lease, logs
 * (the journal's too), shell histories, a random seed; and links that point out of the guest
 * (`/var/log/outside` and `/opt/link` to `os.outside`, a folder of the host that must stay whole).
 */
/** A baked system's files, in `content` (see makeCaptureDisk's `os`). */
export const OS_FILES: Record<string, string> = {
  'etc/os-release': 'PRETTY_NAME="Test OS"\nID=debian\n',
  'etc/hostname': 'baked-a\n',
  'etc/machine-id': '0123456789abcdef0123456789abcdef\n',
  'var/lib/dbus/machine-id': '0123456789abcdef0123456789abcdef\n',
  'etc/ssh/ssh_host_ed25519_key': 'PRIVATE-HOST-KEY\n',
  'etc/ssh/ssh_host_ed25519_key.pub': 'ssh-ed25519 AAAA host\n',
  'etc/ssh/ssh_host_rsa_key': 'PRIVATE-RSA-KEY\n',
  'etc/ssh/sshd_config': 'PermitRootLogin no\n',
  'var/lib/cloud/instance/obj.pkl': 'state',
  'var/lib/cloud/data/instance-id': 'iid-baked-a\n',
  'var/lib/dhcp/dhclient.eth0.leases': 'lease { fixed-address 10.0.2.15; }\n',
  'var/lib/systemd/random-seed': 'SEED',
  'var/log/syslog': 'LOG-LINE\n',
  'var/log/apt/history.log': 'Start-Date\n',
  'var/log/journal/0123/system.journal': 'JOURNAL',
  'root/.bash_history': 'cat /etc/shadow\n',
  'home/alice/.bash_history': 'ls\n',
  'home/alice/notes.txt': 'kept\n',
  'opt/app/config.yml': 'secret: app-secret\n',
}

function writeOsFiles (content: string, outside: string): void {
  for (const [path, text] of Object.entries(OS_FILES)) {
    mkdirSync(join(content, path, '..'), { recursive: true })
    writeFileSync(join(content, path), text)
  }
  mkdirSync(join(content, 'var', 'log', 'empty-dir'), { recursive: true })
  symlinkSync(outside, join(content, 'var', 'log', 'outside'))
  symlinkSync(outside, join(content, 'opt', 'link'))
}

export function makeCaptureDisk (dir: string, name = 'disk', options: { os?: { outside: string } } = {}): CaptureDisk {
  const content = join(dir, `${name}-content`)
  mkdirSync(join(content, 'opt', 'app'), { recursive: true })
  if (options.os !== undefined) writeOsFiles(content, options.os.outside)
  writeFileSync(join(content, 'opt', 'app', 'VERSION'), '1\n')
  writeFileSync(join(content, 'kept.bin'), marker(KEPT_MARKER, 3 * MiB))
  writeFileSync(join(content, 'secret.bin'), marker(DELETED_MARKERS[0] as string, 4 * MiB + 99))
  writeFileSync(join(content, 'opt', 'app', 'old.log'), marker(DELETED_MARKERS[1] as string, 700_000))
  const fsImage = join(dir, `${name}-part1.img`)
  writeFileSync(fsImage, '')
  truncateSync(fsImage, PART1_BYTES)
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', content, fsImage], { stdio: ['ignore', 'ignore', 'pipe'] })
  for (const path of ['/secret.bin', '/opt/app/old.log']) execFileSync('debugfs', ['-w', '-R', `rm ${path}`, fsImage], { stdio: 'ignore' })

  const path = join(dir, `${name}.img`)
  writeFileSync(path, '')
  truncateSync(path, DISK_BYTES)
  const partitions = ['-n', `1:${PART1_START / 512}:+${PART1_BYTES / MiB}M`, '-n', `2:${PART2_START / 512}:+${PART2_BYTES / MiB}M`]
  execFileSync('sgdisk', [...partitions, path], { stdio: 'ignore' })
  const fd = openSync(path, 'r+')
  writeSync(fd, readFileSync(fsImage), 0, PART1_BYTES, PART1_START)
  writeSync(fd, randomBytes(3 * MiB + 5), 0, 3 * MiB + 5, PART2_START + MiB)
  writeSync(fd, randomBytes(2 * MiB), 0, 2 * MiB, PART2_START + PART2_BYTES + 4 * MiB)
  closeSync(fd)

  const bytes = readFileSync(path)
  let freeBytes = 0
  for (const [start, end] of dumpe2fsFree(fsImage)) {
    bytes.fill(0, PART1_START + start, PART1_START + end)
    freeBytes += end - start
  }
  const reference = join(dir, `${name}-reference.img`)
  writeFileSync(reference, bytes)
  return { path, fsImage, reference, freeBytes }
}
