import { lstat, readdir, rm, truncate, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { resolveGuestPath } from './guest-path.js'

/**
 * What makes a clone a new server, done to the image's root filesystem mounted at `root` (after
 * the image is written, before its head): what virt-sysprep and cloud providers' image pipelines
 * reset, each action said in a note. Every guest path goes through resolveGuestPath (links
 * followed inside the guest only); folders are walked without following links; nothing outside
 * `root` is ever touched.
 *
 * - `/etc/machine-id` emptied: systemd sees a first boot and makes a new one (two servers with
 *   one id get the same DHCP client id, the same journal id). A D-Bus copy in /var/lib/dbus is
 *   removed (a link to /etc/machine-id stays).
 * - SSH host keys removed (`/etc/ssh/ssh_host_*`): cloud-init (or the OS's first boot) makes new
 *   ones; otherwise every clone would answer with the same key.
 * - cloud-init's state (`/var/lib/cloud/*`): the clone is a new instance, so cloud-init runs its
 *   once-per-instance modules (host name, keys, user data) again.
 * - DHCP leases (dhclient, dhcpcd, NetworkManager), systemd's random seed.
 * - Logs (`/var/log`, files removed, folders kept, the journal's files included) and shell
 *   histories (root's and each /home user's).
 * - The customer's paths (the application's code and configuration): removed, folders with all
 *   they hold.
 */

export interface ScrubOptions {
  /** Absolute guest paths to remove (checked by the payload parser: no `.` or `..`, not `/`). */
  paths: readonly string[]
}

const LEASE_FOLDERS = ['/var/lib/dhcp', '/var/lib/dhclient', '/var/lib/dhcpcd', '/var/lib/NetworkManager']
const HISTORY_FILES = ['.bash_history', '.zsh_history', '.sh_history', '.ash_history', '.python_history', '.lesshst', '.mysql_history', '.psql_history']

export async function scrubGuest (root: string, options: ScrubOptions): Promise<string[]> {
  const notes: string[] = []
  const say = (count: number, what: string): void => { if (count > 0) notes.push(`scrub: ${what}`) }

  const machineId = await existing(root, '/etc/machine-id')
  if (machineId !== undefined && (await lstat(machineId)).isFile()) {
    await truncate(machineId, 0)
    notes.push('scrub: /etc/machine-id emptied (a new one is made at first boot)')
  }
  const dbusId = await existing(root, '/var/lib/dbus/machine-id')
  if (dbusId !== undefined && (await lstat(dbusId)).isFile()) {
    await unlink(dbusId)
    notes.push('scrub: /var/lib/dbus/machine-id removed')
  }
  say(await removeEntries(root, '/etc/ssh', (name) => name.startsWith('ssh_host_')), 'SSH host keys removed from /etc/ssh (new ones are made at first boot)')
  say(await removeEntries(root, '/var/lib/cloud', () => true), 'cloud-init\'s instance state removed (/var/lib/cloud): the clone is a new instance')
  let leases = 0
  for (const folder of LEASE_FOLDERS) leases += await removeEntries(root, folder, (name) => /lease/i.test(name))
  say(leases, `${leases} DHCP lease file(s) removed`)
  const seed = await existing(root, '/var/lib/systemd/random-seed')
  if (seed !== undefined) {
    await rm(seed, { force: true })
    notes.push('scrub: systemd\'s random seed removed')
  }
  const logs = await folder(root, '/var/log')
  const logFiles = logs === undefined ? 0 : await removeFilesUnder(logs)
  say(logFiles, `${logFiles} log file(s) removed from /var/log`)
  let histories = 0
  const homes = ['/root', ...(await folderNames(root, '/home')).map((name) => `/home/${name}`)]
  for (const home of homes) histories += await removeEntries(root, home, (name) => HISTORY_FILES.includes(name))
  say(histories, `${histories} shell history file(s) removed`)
  for (const path of options.paths) {
    const found = await resolveGuestPath(root, path)
    if (found.kind === 'unreachable' || !found.exists) {
      notes.push(`scrub: ${path} not in the image${found.kind === 'unreachable' ? ` (${found.reason})` : ''}`)
      continue
    }
    if (found.hostPath === root) throw new Error(`${path} is the image's root`)
    await rm(found.hostPath, { recursive: true, force: true })
    notes.push(`scrub: ${path} removed`)
  }
  return notes
}

/** The host path of a guest path that exists, else undefined. */
async function existing (root: string, guestPath: string): Promise<string | undefined> {
  const found = await resolveGuestPath(root, guestPath)
  return found.kind === 'found' && found.exists && found.hostPath !== root ? found.hostPath : undefined
}

/** The host path of a guest folder, links followed inside the guest to the end (never by the host's kernel), or undefined. */
async function folder (root: string, guestPath: string): Promise<string | undefined> {
  const found = await resolveGuestPath(root, guestPath, { followLast: true })
  if (found.kind !== 'found' || !found.exists || found.hostPath === root) return undefined
  return (await lstat(found.hostPath)).isDirectory() ? found.hostPath : undefined
}

async function folderNames (root: string, guestPath: string): Promise<string[]> {
  const path = await folder(root, guestPath)
  if (path === undefined) return []
  return (await readdir(path, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name)
}

/** Removes the entries of a guest folder whose names match (folders with what they hold); how many. */
async function removeEntries (root: string, guestPath: string, match: (name: string) => boolean): Promise<number> {
  const path = await folder(root, guestPath)
  if (path === undefined) return 0
  let removed = 0
  for (const name of await readdir(path)) {
    if (!match(name)) continue
    await rm(join(path, name), { recursive: true, force: true })
    removed++
  }
  return removed
}

/** Removes every file and link under a host folder of the guest, keeping the folders (services expect them); how many. */
async function removeFilesUnder (path: string): Promise<number> {
  let removed = 0
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const child = join(path, entry.name)
    if (entry.isDirectory()) removed += await removeFilesUnder(child)
    else {
      await unlink(child)
      removed++
    }
  }
  return removed
}
