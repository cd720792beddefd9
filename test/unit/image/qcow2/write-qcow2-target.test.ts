import t from 'tap'
import { join } from 'node:path'
import { HEAD_BYTES } from '../../../../agent/disk/boot-area.js'
import { openQcow2, writeQcow2, type Qcow2WriteTarget } from '../../../../agent/image/qcow2/index.js'
import { tempDir } from '../../../helpers/disk-files.js'
import { createQcow2, loadSource, makePatternFile, MemoryTarget, MiB, qemuIo, qemuRaw } from '../../../helpers/qcow2-fixtures.js'

/** How writeQcow2 treats its target: what it reads, what it writes, how much at once, and how it fails. */

const dir = tempDir('byoi-qcow2-target-')
t.teardown(dir.remove)
const pattern = makePatternFile(dir.path, 4 * MiB)
let serial = 0

function image (sizeBytes: number, writes: string[], options: string[] = []): string {
  const file = join(dir.path, `w${serial++}.qcow2`)
  createQcow2(file, sizeBytes, options)
  qemuIo(file, writes)
  return file
}

const sparse = image(32 * MiB, ['write -P 0x11 0 64k', `write -s ${pattern} 4M 4M`, 'write -P 0x12 20M 64k', 'write -z 5M 1M'])
const sparseRaw = qemuRaw(sparse)

t.test('zero ranges already zero on the target are read, never written', async (t) => {
  const target = new MemoryTarget(33 * MiB, 0)
  await writeQcow2(await openQcow2(loadSource(sparse)), loadSource(sparse), target)
  t.ok(target.reads > 0, 'the zero ranges were read')
  const zeroWrites = target.writes.filter((w) => target.bytes.subarray(w.offset, w.offset + w.length).every((b) => b === 0))
  t.same(zeroWrites, [], 'no write of zeros')
  t.ok(target.bytes.subarray(HEAD_BYTES, 32 * MiB).equals(sparseRaw.subarray(HEAD_BYTES)))
})

t.test('zero ranges over old data are written as zeros', async (t) => {
  const target = new MemoryTarget(33 * MiB, 0x5a)
  const head = await writeQcow2(await openQcow2(loadSource(sparse)), loadSource(sparse), target)
  t.ok(head.equals(sparseRaw.subarray(0, HEAD_BYTES)), 'head')
  t.ok(target.bytes.subarray(HEAD_BYTES, 32 * MiB).equals(sparseRaw.subarray(HEAD_BYTES)), 'the guest disk')
  t.ok(target.bytes.subarray(0, HEAD_BYTES).every((b) => b === 0x5a), 'the first MiB untouched')
  t.ok(target.bytes.subarray(32 * MiB).every((b) => b === 0x5a), 'past the virtual size untouched')
  t.ok(target.writes.every((w) => w.offset >= HEAD_BYTES && w.offset + w.length <= 32 * MiB), 'every write in [1 MiB, virtual size)')
  t.ok(target.maxInFlight <= 4, `at most 4 I/Os at once (saw ${target.maxInFlight})`)
  t.ok(target.maxInFlight > 1, 'but more than one')
})

t.test('contiguous data goes in large writes, as views of the source', async (t) => {
  const file = image(32 * MiB, [`write -s ${pattern} 0 4M`, `write -s ${pattern} 4M 4M`, `write -s ${pattern} 8M 4M`, `write -s ${pattern} 12M 4M`, `write -s ${pattern} 16M 4M`])
  const source = loadSource(file)
  const slabs = new Set<ArrayBufferLike>([...source.pieces()].map((piece) => piece.data.buffer))
  const views: boolean[] = []
  const memory = new MemoryTarget(32 * MiB, 0)
  const target: Qcow2WriteTarget = {
    sizeBytes: memory.sizeBytes,
    write: async (data, offset) => { views.push(slabs.has(data.buffer)); await memory.write(data, offset) },
    read: async (data, offset) => { await memory.read(data, offset) },
  }
  await writeQcow2(await openQcow2(source), source, target)
  const dataWrites = memory.writes.filter((w) => w.offset < 20 * MiB)
  t.ok(dataWrites.length <= 4, `19 MiB of contiguous data in ${dataWrites.length} writes`)
  t.ok(dataWrites.every((w) => w.length <= 8 * MiB), 'of at most 8 MiB each')
  t.ok(views.length > 0 && views.every(Boolean), 'each one a view of the downloaded slabs, not a copy')
})

t.test('a target smaller than the virtual disk gets nothing past its end', async (t) => {
  const target = new MemoryTarget(10 * MiB, 0x5a)
  const head = await writeQcow2(await openQcow2(loadSource(sparse)), loadSource(sparse), target)
  t.equal(target.outOfBounds, 0)
  t.equal(head.length, HEAD_BYTES)
  t.ok(target.bytes.subarray(HEAD_BYTES).equals(sparseRaw.subarray(HEAD_BYTES, 10 * MiB)), 'what fits is right')
})

t.test('a virtual disk under 1 MiB lies all in the head', async (t) => {
  const file = image(512 * 1024, ['write -P 0x33 4k 4k', 'write -P 0x34 508k 4k'])
  const target = new MemoryTarget(MiB, 0x5a)
  const head = await writeQcow2(await openQcow2(loadSource(file)), loadSource(file), target)
  t.ok(head.equals(qemuRaw(file)), 'the head is the whole disk')
  t.same(target.writes, [], 'nothing written')
  t.equal(target.reads, 0, 'nothing read')
})

t.test('a failing write ends in QCOW2_WRITE_FAILED, once nothing is under way', async (t) => {
  const memory = new MemoryTarget(33 * MiB, 0x5a)
  let calls = 0
  const cause = new Error('EIO')
  const target: Qcow2WriteTarget = {
    sizeBytes: memory.sizeBytes,
    write: async (data, offset) => {
      if (++calls === 3) throw cause
      await memory.write(data, offset)
    },
    read: async (data, offset) => { await memory.read(data, offset) },
  }
  const err = await writeQcow2(await openQcow2(loadSource(sparse)), loadSource(sparse), target).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'QCOW2_WRITE_FAILED', cause })
  t.equal((err as Error).message, "Can't write qcow2 on disk.")
  t.equal(memory.inFlight, 0, 'no I/O left under way')
  const after = memory.writes.length
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(memory.writes.length, after, 'and none after')
})

t.test('a failing read ends in QCOW2_WRITE_FAILED too', async (t) => {
  const memory = new MemoryTarget(33 * MiB, 0x5a)
  const target: Qcow2WriteTarget = {
    sizeBytes: memory.sizeBytes,
    write: async (data, offset) => { await memory.write(data, offset) },
    read: async () => { throw new Error('EIO') },
  }
  const err = await writeQcow2(await openQcow2(loadSource(sparse)), loadSource(sparse), target).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'QCOW2_WRITE_FAILED', message: "Can't write qcow2 on disk." })
})

t.test('abort', async (t) => {
  t.test('before anything', async (t) => {
    const target = new MemoryTarget(33 * MiB, 0x5a)
    const controller = new AbortController()
    controller.abort()
    const err = await writeQcow2(await openQcow2(loadSource(sparse)), loadSource(sparse), target, { signal: controller.signal }).then(() => undefined, (e: unknown) => e)
    t.match(err, { name: 'AbortError' })
    t.same(target.writes, [])
  })
  t.test('midway: the abort reason, once nothing is under way', async (t) => {
    const memory = new MemoryTarget(33 * MiB, 0x5a)
    const controller = new AbortController()
    const reason = new Error('stop')
    const target: Qcow2WriteTarget = {
      sizeBytes: memory.sizeBytes,
      write: async (data, offset) => {
        controller.abort(reason)
        await memory.write(data, offset)
      },
      read: async (data, offset) => { await memory.read(data, offset) },
    }
    const err = await writeQcow2(await openQcow2(loadSource(sparse)), loadSource(sparse), target, { signal: controller.signal }).then(() => undefined, (e: unknown) => e)
    t.equal(err, reason)
    t.equal(memory.inFlight, 0)
    t.ok(memory.writes.length <= 4, 'at most the writes already under way')
  })
})

t.test('the source must be the one the image was opened from', async (t) => {
  const other = image(16 * MiB, ['write -P 0x11 0 64k'])
  await t.rejects(writeQcow2(await openQcow2(loadSource(sparse)), loadSource(other), new MemoryTarget(MiB)), RangeError)
})
