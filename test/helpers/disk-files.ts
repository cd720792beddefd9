import { execFileSync } from 'node:child_process'
import { closeSync, copyFileSync, existsSync, ftruncateSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export function tempDir (prefix = 'byoi-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix))
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) }
}

/**
 * A sparse disk file of `sizeBytes` whose first and last 2 MiB (and a band in the middle) hold
 * non-zero bytes, so that "untouched" and "zeroed" can both be told apart from a fresh file.
 */
export function makeDirtyDisk (path: string, sizeBytes: number): void {
  const fd = openSync(path, 'w')
  try {
    ftruncateSync(fd, sizeBytes)
    const band = Buffer.alloc(2 * 1024 * 1024, 0xa5)
    writeSync(fd, band, 0, band.length, 0)
    writeSync(fd, band, 0, band.length, Math.floor(sizeBytes / 2))
    writeSync(fd, band, 0, band.length, sizeBytes - band.length)
  } finally {
    closeSync(fd)
  }
}

/** `newDisk()`: a new dirty disk file in `dir` each call (disk-0.img, disk-1.img…), of `sizeBytes` unless told. */
export function dirtyDisks (dir: string, sizeBytes: number): (bytes?: number) => string {
  let count = 0
  return (bytes = sizeBytes) => {
    const path = join(dir, `disk-${count++}.img`)
    makeDirtyDisk(path, bytes)
    return path
  }
}

/**
 * `newDisk()`: a new dirty disk file in `dir` each call (disk-0.img, disk-1.img…) holding an old GPT: partition 1
 * `OLD_OS_ROOT` over the disk, its backup at the disk's last LBA (`sgdisk -o -n 1:2048:0 -c 1:OLD_OS_ROOT`). sgdisk
 * sleeps a second after every write (its DiskSync), so it runs once per size; each call copies those bytes to a
 * file of its own (same bytes, the same disk GUIDs), which its test may compare with itself before and after.
 */
export function oldGptDisks (dir: string, sizeBytes: number): (bytes?: number) => string {
  let count = 0
  return (bytes = sizeBytes) => {
    const template = join(dir, `old-gpt-${bytes}.img`)
    if (!existsSync(template)) {
      makeDirtyDisk(template, bytes)
      execFileSync('sgdisk', ['-o', '-n', '1:2048:0', '-c', '1:OLD_OS_ROOT', template], { stdio: 'ignore' })
    }
    const path = join(dir, `disk-${count++}.img`)
    copyFileSync(template, path)
    return path
  }
}

/** Reads [offset, offset + length) of a file or a block device. */
export function readRange (path: string, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length)
  const fd = openSync(path, 'r')
  try {
    let done = 0
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done)
      if (n === 0) break
      done += n
    }
  } finally {
    closeSync(fd)
  }
  return out
}

/** Attaches a loop device (optionally with 4096-byte logical sectors); detach only what was attached. */
export function attachLoop (file: string, sectorBytes = 512): { device: string; detach: () => void } {
  const args = ['-f', '--show']
  if (sectorBytes !== 512) args.push('-b', String(sectorBytes))
  const device = execFileSync('losetup', [...args, file], { encoding: 'utf8' }).trim()
  return { device, detach: () => execFileSync('losetup', ['-d', device]) }
}


/** `sgdisk -v` on a disk file or device: its report, and whether it found no problem. */
export function sgdiskVerify (path: string): { clean: boolean; report: string } {
  let report: string
  try {
    report = execFileSync('sgdisk', ['-v', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    report = String((err as { stdout?: unknown }).stdout ?? err)
  }
  return { clean: /No problems found/.test(report), report }
}

/** `blkid -p -O OFFSET` probe of a filesystem at a byte offset: its tags (LABEL, TYPE…). */
export function blkidAt (path: string, offset: number): Record<string, string> {
  let out: string
  try {
    out = execFileSync('blkid', ['-p', '-O', String(offset), '-o', 'export', path], { encoding: 'utf8' })
  } catch {
    return {}
  }
  return Object.fromEntries(out.trim().split('\n').map((line) => line.split('=', 2) as [string, string]))
}
