import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SparseSource } from '../../../agent/image/sparse-source.js'
import { openQcow2 } from '../../../agent/image/qcow2/index.js'
import { parseQcow2Header } from '../../../agent/image/qcow2/header.js'
import { memoryImageOf } from '../../helpers/qcow2-fixtures.js'
import { tempDir } from '../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)

t.test('holds the ranges added, merged; refuses to show what was not added', async (t) => {
  const file = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251))
  const source = new SparseSource(file.length)
  source.add(100, file.subarray(100, 200))
  source.add(300, file.subarray(300, 400))
  t.ok(source.view(120, 50).equals(file.subarray(120, 170)))
  t.throws(() => source.view(150, 100), RangeError, 'a view across a hole')
  t.notOk(source.has(199, 2))
  source.add(200, file.subarray(200, 300)) // fills the hole: one piece
  t.ok(source.view(150, 200).equals(file.subarray(150, 350)))
  source.add(150, file.subarray(150, 450)) // overlaps both ends, equal bytes
  t.equal(source.heldBytes, 350)
  t.throws(() => source.add(160, Buffer.alloc(10)), /fetched twice and differ/, 'overlapping bytes must agree')
  source.add(990, file.subarray(990, 1000))
  t.equal(source.view(995, 100).length, 5, 'short past the end of the file')
  t.equal(source.view(1000, 10).length, 0)
  t.throws(() => source.view(-1, 2), RangeError)
})

t.test('openQcow2 on the header, L1 and L2 tables alone gives what it gives on the whole file', async (t) => {
  const raw = join(tmp.path, 'guest.raw')
  const qcow2 = join(tmp.path, 'guest.qcow2')
  execFileSync('qemu-img', ['create', '-q', '-f', 'raw', raw, '64M'])
  for (const offset of ['0', '5M', '33M', '63M']) execFileSync('qemu-io', ['-f', 'raw', '-c', `write -P 0xab ${offset} 256k`, raw])
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, qcow2])
  const bytes = readFileSync(qcow2)
  const whole = await openQcow2(memoryImageOf(bytes))
  const header = parseQcow2Header(memoryImageOf(bytes))
  const sparse = new SparseSource(bytes.length)
  const add = (offset: number, length: number): void => { sparse.add(offset, bytes.subarray(offset, offset + length)) }
  add(0, header.clusterBytes)
  add(header.l1TableOffset, header.l1Entries * 8)
  for (const l2 of whole.l2TableOffsets) if (l2 !== 0) add(l2, header.clusterBytes)
  t.ok(sparse.heldBytes < bytes.length / 10, `${sparse.heldBytes} of ${bytes.length} bytes fetched`)
  const fromTables = await openQcow2(sparse)
  t.same(fromTables, whole)
  const noL2 = new SparseSource(bytes.length)
  noL2.add(0, bytes.subarray(0, header.l1TableOffset + header.l1Entries * 8))
  await t.rejects(openQcow2(noL2), RangeError, 'a table that was not fetched is a RangeError, not zeros')
})
