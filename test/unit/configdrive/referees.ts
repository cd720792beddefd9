import { spawnSync } from 'node:child_process'
import { closeSync, openSync, readSync } from 'node:fs'
import type { ConfigDriveFile } from '../../../agent/configdrive/config-drive-files.js'
import type { ReadAt } from '../../../agent/configdrive/read-fat.js'

/** Runs a referee tool; never throws, so a test can show what it said. */
export function run (command: string, args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { encoding: 'latin1', env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 })
  if (result.error !== undefined) return { status: null, stdout: '', stderr: String(result.error) }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** Like `run`, but the output as bytes (extracting a file to stdout). */
export function runBytes (command: string, args: string[]): Buffer {
  const result = spawnSync(command, args, { maxBuffer: 64 * 1024 * 1024 })
  if (result.error !== undefined || result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${String(result.error ?? result.stderr)}`)
  return result.stdout
}

/** `blkid -p -o export` as key → value. */
export function blkid (target: string): Record<string, string> {
  const out = run('blkid', ['-p', '-o', 'export', target])
  const tags: Record<string, string> = {}
  for (const line of out.stdout.split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) tags[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return tags
}

/** A ReadAt over a file, at byte offsets from `base`. */
export function fileReader (path: string, base = 0): ReadAt {
  return async (offset, length) => {
    const out = Buffer.alloc(length)
    const fd = openSync(path, 'r')
    try {
      let done = 0
      while (done < length) {
        const n = readSync(fd, out, done, length - done, base + offset + done)
        if (n === 0) break
        done += n
      }
      return out.subarray(0, done)
    } finally {
      closeSync(fd)
    }
  }
}

/** A ReadAt over a Buffer; reads past the end come back short. */
export function bufferReader (data: Buffer): ReadAt {
  return async (offset, length) => data.subarray(offset, offset + length)
}

/** Deterministic pseudo-random bytes (a 32-bit LCG), every byte value present. */
export function pseudoRandomBytes (length: number, seed = 1): Buffer {
  const out = Buffer.alloc(length)
  let x = seed >>> 0
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0
    out[i] = x >>> 24
  }
  return out
}

export const LONG_NAME = 'a-file-name-longer-than-thirty-one-characters.txt'

/** A tree that exercises the writers: ~200 KiB of binary user data, a long name, an empty file. */
export function sampleFiles (): ConfigDriveFile[] {
  return [
    { path: 'openstack/latest/meta_data.json', data: Buffer.from('{"uuid":"11111111-2222-4333-8444-555555555555","hostname":"web-1"}') },
    { path: 'openstack/latest/user_data', data: pseudoRandomBytes(200 * 1024 + 17) },
    { path: 'openstack/latest/vendor_data.json', data: Buffer.from('{}') },
    { path: `openstack/latest/${LONG_NAME}`, data: Buffer.from('long names survive\n') },
    { path: 'openstack/content/0000', data: Buffer.alloc(0) },
  ]
}

/** cloud-init's own ConfigDrive reader (Debian's python3-cloudinit) over an extracted tree. */
export function cloudInitRead (dir: string): { metadata: Record<string, unknown>; userdata: string | null } {
  const script = [
    'import json, sys',
    'from cloudinit.sources.DataSourceConfigDrive import read_config_drive',
    'r = read_config_drive(sys.argv[1])',
    "u = r['userdata']",
    "print(json.dumps({'metadata': r['metadata'], 'userdata': u.decode() if isinstance(u, bytes) else u}))",
  ].join('\n')
  // Debian's interpreter: cloud-init is installed for it, not for any other python3 on the PATH.
  const out = run('/usr/bin/python3', ['-c', script, dir])
  if (out.status !== 0) throw new Error(`read_config_drive failed: ${out.stderr}`)
  return JSON.parse(Buffer.from(out.stdout, 'latin1').toString('utf8')) as { metadata: Record<string, unknown>; userdata: string | null }
}
