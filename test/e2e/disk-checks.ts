/**
 * What the harness checks on an installed virtual disk from the host, with independent tools as
 * referees: cmp against `qemu-img convert -O raw` of the image, `sgdisk -v`, sfdisk's view of the
 * partitions, blkid for the config-2 file system, xorriso or mtools to extract it, and cloud-init's
 * own ConfigDrive reader for what the installed system will see.
 */
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'

export interface RunResult { stdout: string; stderr: string; code: number }

/** Runs a tool; never throws for a non-zero exit (the caller judges), only when it cannot start. */
export async function run (command: string, args: string[], timeoutMs = 600_000): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') {
        reject(new Error(`${command} ${args.join(' ')}: ${err.message}`))
        return
      }
      resolve({ stdout, stderr, code: err === null ? 0 : Number(err.code) })
    })
  })
}

async function mustRun (command: string, args: string[]): Promise<string> {
  const result = await run(command, args)
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr.trim()}`)
  return result.stdout
}

/**
 * Runs `fn` with a path on which partition tools see the disk with its logical sector size: the
 * file itself for 512-byte sectors, a read-only loop device with 4096-byte sectors otherwise
 * (sgdisk and sfdisk take a regular file for 512-byte sectors). Detaches only what it attached.
 */
export async function withSectorView<T> (disk: string, sectorBytes: number, fn: (path: string) => Promise<T>): Promise<T> {
  if (sectorBytes === 512) return await fn(disk)
  const loop = (await mustRun('losetup', ['-f', '--show', '-r', '-b', String(sectorBytes), disk])).trim()
  try {
    return await fn(loop)
  } finally {
    await run('losetup', ['-d', loop])
  }
}

export interface Partition { number: number; startLba: number; sectors: number; name: string; type: string }

export async function partitions (disk: string, sectorBytes: number): Promise<Partition[]> {
  const json = await withSectorView(disk, sectorBytes, async (path) => await mustRun('sfdisk', ['--json', path]))
  type SfdiskJson = { partitiontable: { partitions?: Array<{ node: string; start: number; size: number; name?: string; type: string }> } }
  const table = (JSON.parse(json) as SfdiskJson).partitiontable
  return (table.partitions ?? []).map((p) => ({
    number: Number(/(\d+)$/.exec(p.node)?.[1] ?? 0),
    startLba: p.start,
    sectors: p.size,
    name: p.name ?? '',
    type: p.type,
  }))
}

/** `sgdisk -v`: the lines it prints, and whether it found no problem. */
export async function sgdiskVerify (disk: string, sectorBytes: number): Promise<{ clean: boolean; text: string }> {
  const result = await withSectorView(disk, sectorBytes, async (path) => await run('sgdisk', ['-v', path]))
  const text = `${result.stdout}${result.stderr}`.trim()
  return { clean: result.code === 0 && /No problems found/.test(text), text }
}

/**
 * The image's bytes the install must have kept exactly: all of it but the partition table's own
 * sectors, which the install rewrites (protective MBR and primary GPT at the start; the image's
 * backup GPT at its end, moved to the disk's end). Compared with cmp against the raw form.
 */
export async function compareDataRegion (rawImage: string, disk: string, sectorBytes: number): Promise<{ equal: boolean; bytes: number; detail: string }> {
  const imageBytes = (await fs.stat(rawImage)).size
  const entriesSectors = Math.ceil((128 * 128) / sectorBytes) // 128 entries of 128 bytes (UEFI 2.x, 5.3.2)
  const start = (2 + entriesSectors) * sectorBytes // protective MBR, GPT header, entries
  const end = imageBytes - (1 + entriesSectors) * sectorBytes // backup entries and header
  const bytes = end - start
  const result = await run('cmp', ['-n', String(bytes), '-i', `${start}:${start}`, rawImage, disk])
  return { equal: result.code === 0, bytes, detail: `${result.stdout}${result.stderr}`.trim() }
}

export async function sha256 (file: string): Promise<string> {
  return (await mustRun('sha256sum', [file])).split(' ')[0] ?? ''
}

/** Whether `length` bytes at `offset` are all zero. */
export async function isZero (file: string, offset: number, length: number): Promise<boolean> {
  const handle = await fs.open(file, 'r')
  try {
    const buffer = Buffer.alloc(length)
    await handle.read(buffer, 0, length, offset)
    return buffer.every((byte) => byte === 0)
  } finally {
    await handle.close()
  }
}

export interface ConfigDriveContent {
  partition: Partition
  fsType: string
  label: string
  files: string[]
  metaData: Record<string, unknown>
  userData: string | undefined
  /** cloud-init's DataSourceConfigDrive.read_config_drive over the extracted files. */
  cloudInit: { hostname: string | null; instanceId: string | null; meta: Record<string, string> | null; userData: string | null }
}

/** Finds the config-2 partition (by its file system label, as cloud-init does), extracts it and reads it. */
export async function readConfigDrive (disk: string, sectorBytes: number, workDir: string): Promise<ConfigDriveContent> {
  for (const partition of await partitions(disk, sectorBytes)) {
    const offset = partition.startLba * sectorBytes
    const probe = await run('blkid', ['-p', '-o', 'export', '-O', String(offset), disk])
    const label = /^LABEL=(.*)$/m.exec(probe.stdout)?.[1]
    const fsType = /^TYPE=(.*)$/m.exec(probe.stdout)?.[1] ?? ''
    if (label?.toLowerCase() !== 'config-2') continue

    const image = join(workDir, 'config-2.img')
    const dir = join(workDir, 'config-2')
    await fs.rm(dir, { recursive: true, force: true })
    await fs.mkdir(dir, { recursive: true })
    await mustRun('dd', [`if=${disk}`, `of=${image}`, `bs=${sectorBytes}`, `skip=${partition.startLba}`, `count=${partition.sectors}`, 'status=none'])
    if (fsType === 'iso9660') await mustRun('xorriso', ['-osirrox', 'on', '-indev', image, '-extract', '/', dir])
    else if (fsType === 'vfat') await mustRun('mcopy', ['-s', '-n', '-i', image, '::/openstack', dir])
    else throw new Error(`config-2 is ${fsType}, expected iso9660 or vfat`)
    await fs.rm(image) // the extracted files stay in workDir/config-2
    const files = (await fs.readdir(dir, { recursive: true })).map(String).sort()
    const latest = join(dir, 'openstack', 'latest')
    const metaData = JSON.parse(await fs.readFile(join(latest, 'meta_data.json'), 'utf8')) as Record<string, unknown>
    const userData = await fs.readFile(join(latest, 'user_data'), 'utf8').catch(() => undefined)
    const cloudInit = JSON.parse(await mustRun('/usr/bin/python3', ['-c', CLOUD_INIT_READER, dir])) as ConfigDriveContent['cloudInit']
    return { partition, fsType, label, files, metaData, userData, cloudInit }
  }
  throw new Error('no partition with a config-2 file system')
}

const CLOUD_INIT_READER = `
import json, sys
from cloudinit.sources.DataSourceConfigDrive import read_config_drive
r = read_config_drive(sys.argv[1])
md = r.get("metadata", {})
ud = r.get("userdata")
print(json.dumps({
  "hostname": md.get("hostname"), "instanceId": md.get("instance-id"), "meta": md.get("meta"),
  "userData": ud.decode() if isinstance(ud, bytes) else ud,
}))
`

/**
 * The byte offset of the ext4 file system labelled `label` on a disk of 512-byte sectors (the
 * test OS's root, `byoi-root`), found with sfdisk and `blkid -p` at each partition's offset.
 */
export async function ext4Offset (disk: string, label: string): Promise<number> {
  for (const partition of await partitions(disk, 512)) {
    const offset = partition.startLba * 512
    const probe = await run('blkid', ['-p', '-o', 'export', '-O', String(offset), disk])
    if (/^TYPE=ext4$/m.test(probe.stdout) && new RegExp(`^LABEL=${label}$`, 'm').test(probe.stdout)) return offset
  }
  throw new Error(`no ext4 file system labelled ${label} on ${disk}`)
}

/**
 * A file of the guest's ext4 file system at `offset` in `disk`, read by debugfs (read-only, the
 * file system never mounted); undefined when it does not exist.
 */
export async function readGuestFile (disk: string, offset: number, path: string): Promise<string | undefined> {
  const result = await run('debugfs', ['-R', `cat ${path}`, `${disk}?offset=${offset}`])
  if (result.code !== 0) throw new Error(`debugfs cat ${path}: ${result.stderr.trim()}`)
  if (/File not found by ext2_lookup/.test(result.stderr)) return undefined
  return result.stdout
}
