import t from 'tap'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildFat } from '../../../agent/configdrive/build-fat.js'
import { FatFormatError, fatFileExists, readFatLabel, type ReadAt } from '../../../agent/configdrive/read-fat.js'
import { tempDir } from '../../helpers/disk-files.js'
import { hostileEspBytes } from '../../helpers/hostile-qcow2.js'
import { bufferReader, fileReader, LONG_NAME, pseudoRandomBytes, run, sampleFiles } from './referees.js'

const tmp = tempDir('byoi-readfat-')
t.teardown(tmp.remove)

const SHIM_LONG = 'Shim Fallback With A Long Name.efi'

/** An EFI system partition as distributions make it: mkfs.vfat, then mtools. */
function makeEsp (name: string, mkfsArgs: string[], sizeKiB: number): string {
  const path = join(tmp.path, name)
  const made = run('mkfs.vfat', [...mkfsArgs, '-C', path, String(sizeKiB)])
  if (made.status !== 0) throw new Error(made.stderr)
  const payload = join(tmp.path, 'payload.efi')
  writeFileSync(payload, pseudoRandomBytes(70 * 1024))
  for (const dir of ['::/EFI', '::/EFI/debian', '::/EFI/BOOT']) run('mmd', ['-i', path, dir])
  for (const target of ['::/EFI/debian/grubx64.efi', '::/EFI/debian/shimx64.efi', '::/EFI/BOOT/BOOTX64.EFI', `::/EFI/BOOT/${SHIM_LONG}`]) {
    const copied = run('mcopy', ['-i', path, payload, target])
    if (copied.status !== 0) throw new Error(copied.stderr)
  }
  // Enough entries that EFI/debian spans several clusters, and a file after them.
  const modules = join(tmp.path, 'modules')
  mkdirSync(modules, { recursive: true })
  const names = [...Array.from({ length: 120 }, (_, i) => `module-with-a-long-name-${i}.mod`), 'zz-last.cfg']
  for (const name of names) writeFileSync(join(modules, name), name)
  const copied = run('mcopy', ['-i', path, ...names.map((name) => join(modules, name)), '::/EFI/debian/'])
  if (copied.status !== 0) throw new Error(copied.stderr)
  return path
}

const esps = [
  { name: 'FAT16 ESP (mkfs.vfat, 40 MiB)', file: 'esp16.img', args: ['-F', '16', '-n', 'ESP'], sizeKiB: 40 * 1024, fatBits: '16', label: 'ESP' },
  {
    name: 'FAT32 ESP (mkfs.vfat -F 32, 34 MiB)',
    file: 'esp32.img',
    args: ['-F', '32', '-n', 'EFI-SYSTEM'],
    sizeKiB: 34 * 1024,
    fatBits: '32',
    label: 'EFI-SYSTEM',
  },
  {
    name: 'FAT32 ESP with 4096-byte sectors (260 MiB, sparse)',
    file: 'esp32-4k.img',
    args: ['-F', '32', '-S', '4096', '-s', '1'],
    sizeKiB: 260 * 1024,
    fatBits: '32',
    label: undefined,
  },
  { name: 'FAT12 (mkfs.vfat, 1.44 MB)', file: 'esp12.img', args: ['-F', '12', '-n', 'small'], sizeKiB: 1440, fatBits: '12', label: 'small' },
]

for (const esp of esps) {
  t.test(esp.name, async (t) => {
    const path = makeEsp(esp.file, esp.args, esp.sizeKiB)
    t.match(run('fsck.fat', ['-n', '-v', path]).stdout, `${esp.fatBits} bit entries`, 'the FAT type intended')
    const read = fileReader(path)
    t.equal(await fatFileExists(read, '\\EFI\\debian\\grubx64.efi'), true)
    t.equal(await fatFileExists(read, '\\efi\\DEBIAN\\GRUBX64.EFI'), true, 'case-insensitive, as UEFI')
    t.equal(await fatFileExists(read, '\\EFI\\BOOT\\BOOTX64.EFI'), true)
    t.equal(await fatFileExists(read, '/EFI/boot/bootx64.efi'), true, 'forward slashes too')
    t.equal(await fatFileExists(read, `\\EFI\\BOOT\\${SHIM_LONG.toUpperCase()}`), true, 'a long name, case-insensitive')
    t.equal(await fatFileExists(read, '\\EFI\\BOOT\\SHIMFA~1.EFI'), true, 'its short alias too')
    t.equal(await fatFileExists(read, '\\EFI\\debian\\zz-last.cfg'), true, 'past the first cluster of a directory')
    t.equal(await fatFileExists(read, '\\EFI\\debian\\module-with-a-long-name-119.mod'), true)
    t.equal(await fatFileExists(read, '\\EFI\\debian\\missing.efi'), false, 'missing')
    t.equal(await fatFileExists(read, '\\EFI\\fedora\\grubx64.efi'), false, 'missing directory')
    t.equal(await fatFileExists(read, '\\EFI\\debian'), false, 'a directory is not a file')
    t.equal(await fatFileExists(read, '\\EFI\\debian\\grubx64.efi\\more'), false, 'a file is not a directory')
    t.equal(await readFatLabel(read), esp.label)
  })
}

t.test('on our own buildFat output, 512- and 4096-byte sectors', async (t) => {
  for (const sectorBytes of [512, 4096]) {
    const image = buildFat(sampleFiles(), { sectorBytes })
    const read = bufferReader(image)
    for (const file of sampleFiles()) {
      t.equal(await fatFileExists(read, `\\${file.path.replaceAll('/', '\\')}`), true, `${sectorBytes}: ${file.path}`)
      t.equal(await fatFileExists(read, file.path.toUpperCase()), true, `${sectorBytes}: ${file.path} in capitals`)
    }
    t.equal(await fatFileExists(read, `openstack/latest/${LONG_NAME}x`), false)
    t.equal(await readFatLabel(read), 'config-2')
  }
  t.equal(await readFatLabel(bufferReader(buildFat(sampleFiles(), { sectorBytes: 512, label: 'CONFIG-2' }))), 'CONFIG-2')
})

t.test('no label: undefined ("NO NAME")', async (t) => {
  const path = join(tmp.path, 'nolabel.img')
  t.equal(run('mkfs.vfat', ['-C', path, '2048']).status, 0)
  t.equal(await readFatLabel(fileReader(path)), undefined)
})

/** Runs `body`, failing if it takes longer than `ms` (it must not hang on hostile input). */
async function within<T> (ms: number, body: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`took more than ${ms} ms`)), ms) })
  try {
    return await Promise.race([body(), timeout])
  } finally {
    clearTimeout(timer)
  }
}

function countingReader (data: Buffer): { read: ReadAt; count: () => number } {
  let reads = 0
  return { read: async (offset, length) => { reads++; return data.subarray(offset, offset + length) }, count: () => reads }
}

t.test('garbage: a clear error or false, never a hang', async (t) => {
  const garbage = [['zeros', Buffer.alloc(1024 * 1024)], ['random bytes', pseudoRandomBytes(1024 * 1024, 7)], ['too short', Buffer.alloc(100)]] as const
  for (const [name, data] of garbage) {
    await t.rejects(within(2000, () => fatFileExists(bufferReader(data), '\\EFI\\BOOT\\BOOTX64.EFI')), FatFormatError, name)
    t.equal(await within(2000, () => readFatLabel(bufferReader(data))), undefined, `${name}: no label`)
  }
  await t.rejects(fatFileExists(bufferReader(buildFat([], { sectorBytes: 512 })), ''), RangeError, 'an empty path')
  await t.rejects(fatFileExists(bufferReader(buildFat([], { sectorBytes: 512 })), '\\EFI\\..\\x'), RangeError, 'a ".." component')
})

t.test('hostile FAT: a directory whose chain loops, a link out of range, a truncated device', async (t) => {
  const files = sampleFiles()
  // 512-byte sectors, 2 KiB clusters: cluster 2 is "openstack", the first subdirectory.
  const image = buildFat(files, { sectorBytes: 512, sizeBytes: 4 * 1024 * 1024 })
  const fatSectors = image.readUInt16LE(22)
  const rootEntries = image.readUInt16LE(17)
  const dataStart = (1 + 2 * fatSectors) * 512 + rootEntries * 32
  const fatBits = image.toString('latin1', 54, 62).trim() === 'FAT12' ? 12 : 16
  t.equal(fatBits, 12, 'a FAT12 at 4 MiB')

  const setFat12 = (fs: Buffer, cluster: number, value: number): void => {
    for (const copy of [0, 1]) {
      const offset = 512 + copy * fatSectors * 512 + Math.floor((cluster * 3) / 2)
      const pair = fs.readUInt16LE(offset)
      fs.writeUInt16LE(cluster % 2 === 0 ? (pair & 0xf000) | value : (pair & 0x000f) | (value << 4), offset)
    }
  }

  // A loop: "openstack" links back to itself and its cluster has no end-of-directory marker.
  const looped = Buffer.from(image)
  setFat12(looped, 2, 2)
  for (let at = dataStart; at < dataStart + 2048; at += 32) if (looped[at] === 0) looped[at] = 0xe5
  const counted = countingReader(looped)
  await t.rejects(within(2000, () => fatFileExists(counted.read, '\\openstack\\latest\\user_data')), { name: 'FatFormatError', message: /loops/ })
  t.ok(counted.count() < 20, `few reads (${counted.count()})`)
  t.equal(await readFatLabel(bufferReader(looped)), 'config-2', 'the label is still read from the root')

  const outOfRange = Buffer.from(image)
  setFat12(outOfRange, 2, 0xff0) // a reserved value, neither a cluster nor end of chain
  for (let at = dataStart; at < dataStart + 2048; at += 32) if (outOfRange[at] === 0) outOfRange[at] = 0xe5
  await t.rejects(fatFileExists(bufferReader(outOfRange), '\\openstack\\latest\\user_data'), { name: 'FatFormatError', message: /out of range/ })

  const truncated = image.subarray(0, dataStart + 1024)
  await t.rejects(fatFileExists(bufferReader(truncated), '\\openstack\\latest\\user_data'), { name: 'FatFormatError', message: /returned/ })

  // A FAT32 whose root directory chain loops.
  const esp = makeEsp('loop32.img', ['-F', '32'], 34 * 1024)
  const fs32 = readFileSync(esp)
  const rootCluster = fs32.readUInt32LE(44)
  const reserved = fs32.readUInt16LE(14)
  fs32.writeUInt32LE(rootCluster, reserved * 512 + rootCluster * 4)
  const reads = countingReader(fs32)
  const result = await within(2000, () => fatFileExists(reads.read, '\\EFI\\nothing.efi').catch((err: unknown) => err))
  t.ok(result === false || result instanceof FatFormatError, 'false or FatFormatError')
})

t.test('a bad boot sector is refused by name', async (t) => {
  const image = buildFat(sampleFiles(), { sectorBytes: 512, sizeBytes: 1024 * 1024 })
  const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
    ['sector size', (b) => b.writeUInt16LE(500, 11), /bytes per sector/],
    ['sectors per cluster', (b) => { b[13] = 3 }, /sectors per cluster/],
    ['reserved', (b) => b.writeUInt16LE(0, 14), /reserved/],
    ['FAT count', (b) => { b[16] = 0 }, /no FAT/],
    ['media', (b) => { b[21] = 0x12 }, /media/],
    ['FAT size', (b) => { b.writeUInt16LE(0, 22); b.writeUInt32LE(0, 36) }, /FAT size/],
    ['root entries', (b) => b.writeUInt16LE(7, 17), /root directory entries/],
    ['total sectors', (b) => b.writeUInt16LE(10, 19), /data area/],
  ]
  for (const [name, damage, message] of cases) {
    const copy = Buffer.from(image)
    damage(copy)
    await t.rejects(fatFileExists(bufferReader(copy), 'openstack'), { name: 'FatFormatError', message }, name)
  }
})

t.test('a directory of 65,536 deleted entries (a 4096-cluster chain): walked to its end, or stopped by an abort', async (t) => {
  const esp = hostileEspBytes()
  const whole = countingReader(esp)
  t.equal(await fatFileExists(whole.read, '\\EFI\\BOOT\\BOOTX64.EFI'), false, 'not found, after the whole chain')
  t.ok(whole.count() > 4096, `every cluster read (${whole.count()} reads)`)

  // The reader aborts the walk after 100 reads: the walk ends with the signal's reason, not "not found".
  const controller = new AbortController()
  const stop = new Error('stopped by the test')
  let reads = 0
  const aborting: ReadAt = async (offset, length) => {
    if (++reads === 100) controller.abort(stop)
    return esp.subarray(offset, offset + length)
  }
  await t.rejects(fatFileExists(aborting, '\\EFI\\BOOT\\BOOTX64.EFI', { signal: controller.signal }), stop)
  t.ok(reads <= 102, `no read after the abort but those under way (${reads})`)
  await t.rejects(fatFileExists(bufferReader(esp), '\\EFI', { signal: controller.signal }), stop, 'an aborted signal: nothing read')
})
