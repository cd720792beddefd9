import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildFat, fatGeometry } from '../../../agent/configdrive/build-fat.js'
import { attachLoop, tempDir } from '../../helpers/disk-files.js'
import { blkid, LONG_NAME, run, sampleFiles } from './referees.js'

const tmp = tempDir('byoi-fat-')
t.teardown(tmp.remove)

const files = sampleFiles()
const timestamp = new Date(Date.UTC(2024, 4, 17, 12, 34, 56))

const cases = [
  { name: '512-byte sectors, 64 MiB (FAT16)', sectorBytes: 512, sizeBytes: 64 * 1024 * 1024, version: 'FAT16' },
  { name: '4096-byte sectors, 64 MiB (FAT16)', sectorBytes: 4096, sizeBytes: 64 * 1024 * 1024, version: 'FAT16' },
  { name: '512-byte sectors, 1 MiB (FAT12)', sectorBytes: 512, sizeBytes: 1024 * 1024, version: 'FAT12' },
  { name: '4096-byte sectors, 4 MiB (FAT12)', sectorBytes: 4096, sizeBytes: 4 * 1024 * 1024, version: 'FAT12' },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const path = join(tmp.path, `fat-${c.sectorBytes}-${c.sizeBytes}.img`)
    const image = buildFat(files, { sectorBytes: c.sectorBytes, sizeBytes: c.sizeBytes, timestamp })
    t.equal(image.length, c.sizeBytes, 'fills the size asked for')
    writeFileSync(path, image)

    const fsck = run('fsck.fat', ['-n', '-v', path])
    t.equal(fsck.status, 0, `fsck.fat -n exit 0\n${fsck.stdout}${fsck.stderr}`)
    t.match(fsck.stdout, `${c.sectorBytes} bytes per logical sector`)
    t.notMatch(fsck.stdout + fsck.stderr, /differ|invalid|bad|error|not|free cluster|mark|Reclaim|Drop|Truncat|Fix/i, 'no complaint')

    // mtools reads 4096-byte sectors without MTOOLS_SKIP_CHECK (its check is about geometry, not sector size).
    const listing = run('mdir', ['-i', path, '-/', '-a', '::'])
    t.equal(listing.status, 0, listing.stderr)
    t.match(listing.stdout, /Volume in drive : is config-2/)
    for (const name of ['meta_data.json', 'user_data', 'vendor_data.json', LONG_NAME, 'openstack', 'latest', 'content', '0000']) {
      t.match(listing.stdout, new RegExp(` ${name.replaceAll('.', '\\.')}\\n`), `long name ${name}`)
    }
    for (const file of files) {
      const out = join(tmp.path, `out-${c.sectorBytes}-${c.sizeBytes}`)
      const copied = run('mcopy', ['-n', '-o', '-i', path, `::/${file.path}`, out])
      t.equal(copied.status, 0, copied.stderr)
      t.ok(readFileSync(out).equals(file.data), `mcopy ${file.path} byte for byte`)
    }

    const tags = blkid(path)
    t.equal(tags.LABEL, 'config-2', 'the root volume-label entry')
    t.equal(tags.LABEL_FATBOOT, 'config-2', 'the boot sector label')
    t.equal(tags.TYPE, 'vfat')
    t.equal(tags.VERSION, c.version)
    t.equal(tags.BLOCK_SIZE, String(c.sectorBytes))
  })
}

t.test('on a loop device with 4096-byte logical sectors, blkid sees the same', async (t) => {
  const path = join(tmp.path, 'loop-4096.img')
  writeFileSync(path, buildFat(files, { sectorBytes: 4096, timestamp }))
  const loop = attachLoop(path, 4096)
  t.teardown(loop.detach)
  t.equal(run('blockdev', ['--getss', loop.device]).stdout.trim(), '4096', 'a real 4Kn device')
  const tags = blkid(loop.device)
  t.equal(tags.LABEL, 'config-2')
  t.equal(tags.TYPE, 'vfat')
  t.equal(tags.BLOCK_SIZE, '4096')
  const fsck = run('fsck.fat', ['-n', loop.device])
  t.equal(fsck.status, 0, fsck.stdout + fsck.stderr)
})

t.test('the geometry: 2 KiB clusters, FAT16 for 64 MiB as mkfs.fat makes it at 512', async (t) => {
  t.match(fatGeometry(512, 64 * 1024 * 1024), { sectorsPerCluster: 4, clusterBytes: 2048, fatBits: 16, clusterCount: 32695 })
  t.match(fatGeometry(4096, 64 * 1024 * 1024), { sectorsPerCluster: 1, clusterBytes: 4096, fatBits: 16 })
  t.match(fatGeometry(512, 2 * 1024 * 1024), { fatBits: 12 })
  // 16,400 sectors would give ~4085 clusters, where Linux, Windows and blkid disagree on the type:
  // the filesystem stops at 4080 clusters (FAT12) instead.
  const between = fatGeometry(512, 16400 * 512)
  t.equal(between.fatBits, 12)
  t.equal(between.clusterCount, 4080)
  const path = join(tmp.path, 'between.img')
  const image = buildFat(files, { sectorBytes: 512, sizeBytes: 16400 * 512 })
  t.equal(image.length, 16400 * 512, 'the image still has the size asked for')
  t.ok(image.readUInt16LE(19) < 16400, 'the filesystem is shorter')
  writeFileSync(path, image)
  const fsck = run('fsck.fat', ['-n', path])
  t.equal(fsck.status, 0, fsck.stdout + fsck.stderr)
  t.equal(blkid(path).VERSION, 'FAT12')
  for (let sectors = 16_000; sectors <= 16_800; sectors++) {
    const g = fatGeometry(512, sectors * 512)
    if (g.clusterCount > 4080 && g.clusterCount < 4090) t.fail(`${sectors} sectors give ${g.clusterCount} clusters`)
    if ((g.fatBits === 12) !== (g.clusterCount <= 4084)) t.fail(`${sectors} sectors: FAT${g.fatBits} with ${g.clusterCount} clusters`)
  }
})

t.test('deterministic; the volume serial from the content or from the options', async (t) => {
  const a = buildFat(files, { sectorBytes: 512, timestamp })
  t.ok(a.equals(buildFat(sampleFiles(), { sectorBytes: 512, timestamp })), 'same input, same bytes')
  const other = buildFat([...files, { path: 'x', data: Buffer.from('y') }], { sectorBytes: 512, timestamp })
  t.not(a.readUInt32LE(39), other.readUInt32LE(39), 'the serial follows the content')
  const chosen = buildFat(files, { sectorBytes: 512, timestamp, volumeSerial: 0x1234abcd })
  t.equal(chosen.readUInt32LE(39), 0x1234abcd)
  const path = join(tmp.path, 'serial.img')
  writeFileSync(path, chosen)
  t.equal(blkid(path).UUID, '1234-ABCD')
})

t.test('a label in capitals, as Ironic writes it', async (t) => {
  const path = join(tmp.path, 'upper.img')
  writeFileSync(path, buildFat(files, { sectorBytes: 512, label: 'CONFIG-2' }))
  t.equal(blkid(path).LABEL, 'CONFIG-2')
  t.equal(run('fsck.fat', ['-n', path]).status, 0)
})

t.test('refusals', async (t) => {
  t.throws(() => buildFat(files, { sectorBytes: 520 }), /sector size/)
  t.throws(() => buildFat(files, { sectorBytes: 4096, sizeBytes: 1024 * 1024 + 512 }), /whole number/)
  t.throws(() => buildFat(files, { sectorBytes: 512, sizeBytes: 65 * 1024 * 1024 }), /size must be/)
  t.throws(() => buildFat(files, { sectorBytes: 512, sizeBytes: 128 * 1024 }), /size must be/)
  t.throws(() => buildFat(files, { sectorBytes: 512, label: 'config.2' }), /label/)
  t.throws(() => buildFat(files, { sectorBytes: 512, label: 'a-label-too-long' }), /label/)
  t.throws(() => buildFat([{ path: 'big', data: Buffer.alloc(2 * 1024 * 1024) }], { sectorBytes: 512, sizeBytes: 1024 * 1024 }), /does not fit/)
  const many = Array.from({ length: 300 }, (_, i) => ({ path: `file-number-${i}`, data: Buffer.alloc(0) }))
  t.throws(() => buildFat(many, { sectorBytes: 512 }), /root directory/)
})

t.test('many files in one directory: short names stay unique, the directory spans clusters', async (t) => {
  const many = Array.from({ length: 150 }, (_, i) => ({ path: `openstack/content/meta_data-${String(i).padStart(3, '0')}.json`, data: Buffer.from(String(i)) }))
  const path = join(tmp.path, 'many.img')
  writeFileSync(path, buildFat(many, { sectorBytes: 4096 }))
  const fsck = run('fsck.fat', ['-n', path])
  t.equal(fsck.status, 0, fsck.stdout + fsck.stderr)
  const listing = run('mdir', ['-i', path, '-b', '::/openstack/content'])
  t.equal(listing.stdout.trim().split('\n').length, 150)
  for (const i of [0, 9, 10, 99, 149]) {
    const file = many[i]
    if (file === undefined) continue
    const out = join(tmp.path, 'many-out')
    t.equal(run('mcopy', ['-n', '-o', '-i', path, `::/${file.path}`, out]).status, 0)
    t.ok(readFileSync(out).equals(file.data), file.path)
  }
})
