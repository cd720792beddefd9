import { lstat, readlink } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * A path of the guest (the image's root filesystem, mounted at `root` in the rescue system) as the
 * guest itself would resolve it: symbolic links followed inside the guest, as under chroot(2) —
 * an absolute target starts again from the guest's root, `..` stops at it — so no link in the
 * image can lead a scrub out of the mount into the rescue system's own files. The last component
 * is not followed (removing a link removes the link) unless `followLast` (a folder to list). Names come from the image: they are joined
 * to `root` one component at a time, never as a path.
 */

/** Links followed in one resolution at most, as Linux's MAXSYMLINKS. */
const MAX_LINKS = 40

export type GuestPath =
  /** The host path of the guest's path; `exists` false: its parent exists, it does not. */
  | { kind: 'found'; hostPath: string; exists: boolean }
  /** A component on the way is missing or not a folder, or the links loop. */
  | { kind: 'unreachable'; reason: string }

export async function resolveGuestPath (root: string, guestPath: string, options: { followLast?: boolean } = {}): Promise<GuestPath> {
  const pending = guestPath.split('/')
  const resolved: string[] = []
  let links = 0
  while (pending.length > 0) {
    const name = pending.shift() as string
    if (name === '' || name === '.') continue
    if (name === '..') {
      resolved.pop()
      continue
    }
    const last = !pending.some((rest) => rest !== '' && rest !== '.')
    const hostPath = join(root, ...resolved, name)
    let stat
    try {
      stat = await lstat(hostPath)
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ENOENT') throw err
      if (last) return { kind: 'found', hostPath, exists: false }
      return { kind: 'unreachable', reason: `/${[...resolved, name].join('/')} does not exist` }
    }
    if (last && !(options.followLast === true && stat.isSymbolicLink())) return { kind: 'found', hostPath, exists: true }
    if (stat.isSymbolicLink()) {
      if (++links > MAX_LINKS) return { kind: 'unreachable', reason: 'too many levels of symbolic links' }
      const target = await readlink(hostPath)
      if (target.startsWith('/')) resolved.length = 0
      pending.unshift(...target.split('/'))
      continue
    }
    if (!stat.isDirectory()) return { kind: 'unreachable', reason: `/${[...resolved, name].join('/')} is not a folder` }
    resolved.push(name)
  }
  return { kind: 'found', hostPath: root, exists: true }
}
