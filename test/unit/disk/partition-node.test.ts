import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { findPartitionNode } from '../../../agent/disk/partition-node.js'
import { tempDir } from '../../helpers/disk-files.js'
import type { TapTest } from '../../helpers/tap.js'

// A fake sysfs and /dev: directories and files as the kernel shows them, device nodes made with mknod.
const isRoot = process.getuid?.() === 0
const MiB = 1024 * 1024

interface FakeDisk { sys: string; dev: string; disk: string }

/** /dev/NAME (block MAJOR:0) and /sys/dev/block/MAJOR:0 with partitions as [name, number, start, size in 512-byte units]. */
function fakeDisk (t: TapTest, name: string, major: number, partitions: Array<[string, number, number, number]>): FakeDisk {
  const tmp = tempDir()
  t.teardown(tmp.remove)
  const sys = join(tmp.path, 'sys')
  const dev = join(tmp.path, 'dev')
  const diskDir = join(sys, 'dev', 'block', `${major}:0`)
  mkdirSync(join(diskDir, 'queue'), { recursive: true })
  mkdirSync(dev)
  writeFileSync(join(diskDir, 'dev'), `${major}:0\n`)
  for (const [child, number, start, size] of partitions) {
    mkdirSync(join(diskDir, child))
    writeFileSync(join(diskDir, child, 'partition'), `${number}\n`)
    writeFileSync(join(diskDir, child, 'start'), `${start}\n`)
    writeFileSync(join(diskDir, child, 'size'), `${size}\n`)
    writeFileSync(join(diskDir, child, 'dev'), `${major}:${number}\n`)
  }
  const disk = join(dev, name)
  execFileSync('mknod', [disk, 'b', String(major), '0'])
  return { sys, dev, disk }
}

const span = { number: 3, offsetBytes: 2046 * MiB, sizeBytes: 2 * MiB }
const sectors = (bytes: number): number => bytes / 512

t.test('finds /dev/NAME of the partition with that number, start and size', { skip: isRoot ? false : 'needs root for mknod' }, async (t) => {
  for (const [disk, first, part, major] of [['vda', 'vda1', 'vda3', 252], ['nvme0n1', 'nvme0n1p1', 'nvme0n1p3', 259], ['sda', 'sda1', 'sda3', 8]] as const) {
    const fake = fakeDisk(t, disk, major, [[first, 1, 2048, 100], [part, 3, sectors(span.offsetBytes), sectors(span.sizeBytes)]])
    execFileSync('mknod', [join(fake.dev, part), 'b', String(major), '3'])
    const found = await findPartitionNode(fake.disk, span, { sysRoot: fake.sys, devRoot: fake.dev, timeoutMs: 0 })
    t.same(found, { found: true, device: join(fake.dev, part) }, part)
  }
})

t.test('waits for the node devtmpfs makes, within the time given', { skip: isRoot ? false : 'needs root for mknod' }, async (t) => {
  const fake = fakeDisk(t, 'vdb', 240, [['vdb3', 3, sectors(span.offsetBytes), sectors(span.sizeBytes)]])
  setTimeout(() => execFileSync('mknod', [join(fake.dev, 'vdb3'), 'b', '240', '3']), 150)
  const started = Date.now()
  const found = await findPartitionNode(fake.disk, span, { sysRoot: fake.sys, devRoot: fake.dev, timeoutMs: 3000, pollMs: 20 })
  t.same(found, { found: true, device: join(fake.dev, 'vdb3') })
  t.ok(Date.now() - started < 2000, 'found as soon as it appeared')
})

t.test('says why when nothing fits in time', { skip: isRoot ? false : 'needs root for mknod' }, async (t) => {
  const noNode = fakeDisk(t, 'vdc', 241, [['vdc3', 3, sectors(span.offsetBytes), sectors(span.sizeBytes)]])
  const started = Date.now()
  const missing = await findPartitionNode(noNode.disk, span, { sysRoot: noNode.sys, devRoot: noNode.dev, timeoutMs: 300, pollMs: 50 })
  t.same(missing, { found: false, reason: `no device node ${join(noNode.dev, 'vdc3')} for partition 3 of ${noNode.disk} (waited 0.3 s)` })
  t.ok(Date.now() - started >= 300, 'polled until the deadline')

  const noPartition = fakeDisk(t, 'vdd', 242, [['vdd1', 1, 2048, 100]])
  t.same(await findPartitionNode(noPartition.disk, span, { sysRoot: noPartition.sys, devRoot: noPartition.dev, timeoutMs: 0 }),
    { found: false, reason: `the kernel shows no partition 3 of ${noPartition.disk} (waited 0 s)` })

  // The kernel still shows the table it read before ours: never mount that partition.
  const stale = fakeDisk(t, 'vde', 243, [['vde3', 3, 2048, sectors(span.sizeBytes)]])
  execFileSync('mknod', [join(stale.dev, 'vde3'), 'b', '243', '3'])
  const old = await findPartitionNode(stale.disk, span, { sysRoot: stale.sys, devRoot: stale.dev, timeoutMs: 0 })
  t.same(old, {
    found: false,
    reason: `the kernel's partition 3 of ${stale.disk} (vde3) lies at bytes ${MiB} + ${span.sizeBytes}, ` +
      `not at ${span.offsetBytes} + ${span.sizeBytes} as written (waited 0 s)`,
  })

  // A node of that name that is another device.
  const other = fakeDisk(t, 'vdf', 244, [['vdf3', 3, sectors(span.offsetBytes), sectors(span.sizeBytes)]])
  execFileSync('mknod', [join(other.dev, 'vdf3'), 'b', '244', '7'])
  const found = await findPartitionNode(other.disk, span, { sysRoot: other.sys, devRoot: other.dev, timeoutMs: 0 })
  t.match(found, { found: false, reason: /is not block device 244:3/ })
})

t.test('a regular file is no block device', async (t) => {
  const tmp = tempDir()
  t.teardown(tmp.remove)
  const file = join(tmp.path, 'disk.img')
  writeFileSync(file, Buffer.alloc(4096))
  t.same(await findPartitionNode(file, span), { found: false, reason: `${file} is not a block device` })
  t.match(await findPartitionNode(join(tmp.path, 'missing'), span), { found: false, reason: /^cannot stat / })
})
