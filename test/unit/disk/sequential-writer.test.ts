import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Disk } from '../../../agent/disk/disk.js'
import { HEAD_BYTES, SequentialWriter } from '../../../agent/disk/sequential-writer.js'
import { inlineDigest, WorkerDigest } from '../../../agent/download/running-digest.js'
import { errors } from '../../../agent/errors/install-error.js'
import { tempDir } from '../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)
const MiB = 1024 * 1024

async function openDisk (name: string, sizeBytes: number, fill = 0xee): Promise<Disk> {
  const path = join(tmp.path, name)
  writeFileSync(path, Buffer.alloc(sizeBytes, fill))
  return await Disk.open(path)
}

function writerFor (disk: Disk, slabBytes = 64 * 1024): SequentialWriter {
  return new SequentialWriter(disk, {
    slabBytes,
    maxInFlight: 3,
    limitBytes: disk.sizeBytes,
    tooBig: (n) => errors.imageTooBigForDisk(n, disk.path, disk.sizeBytes),
    writeFailed: (cause) => errors.rawWriteFailed(cause),
  })
}

t.test('writes everything but the first MiB, which it returns', async (t) => {
  const disk = await openDisk('a.img', 8 * MiB)
  t.teardown(() => disk.close())
  const data = randomBytes(5 * MiB + 333)
  const writer = writerFor(disk)
  for (let at = 0; at < data.length; at += 7777) await writer.write(data.subarray(at, at + 7777))
  t.equal(writer.bytes, data.length)
  const head = await writer.finish()
  t.ok(head.equals(data.subarray(0, HEAD_BYTES)), 'head is the first MiB')
  const onDisk = readFileSync(disk.path)
  t.ok(onDisk.subarray(0, HEAD_BYTES).equals(Buffer.alloc(HEAD_BYTES, 0xee)), 'first MiB not written')
  t.ok(onDisk.subarray(HEAD_BYTES, data.length).equals(data.subarray(HEAD_BYTES)), 'the rest is')
  t.ok(writer.wroteToDisk)
})

t.test('an image smaller than a MiB never touches the disk', async (t) => {
  const disk = await openDisk('b.img', 4 * MiB)
  t.teardown(() => disk.close())
  const writer = writerFor(disk)
  await writer.write(Buffer.alloc(1000, 7))
  const head = await writer.finish()
  t.equal(head.length, 1000)
  t.notOk(writer.wroteToDisk)
})

t.test('rewind starts again at byte 0', async (t) => {
  const disk = await openDisk('c.img', 8 * MiB)
  t.teardown(() => disk.close())
  const first = randomBytes(3 * MiB)
  const second = randomBytes(2 * MiB)
  const writer = writerFor(disk)
  await writer.write(first)
  await writer.rewind()
  t.equal(writer.bytes, 0)
  await writer.write(second)
  const head = await writer.finish()
  t.ok(head.equals(second.subarray(0, HEAD_BYTES)))
  t.ok(readFileSync(disk.path).subarray(HEAD_BYTES, 2 * MiB).equals(second.subarray(HEAD_BYTES)))
})

t.test('going past the limit throws the given error before writing the chunk', async (t) => {
  const disk = await openDisk('d.img', 2 * MiB)
  t.teardown(() => disk.close())
  const writer = writerFor(disk)
  await writer.write(Buffer.alloc(2 * MiB - 10))
  await t.rejects(writer.write(Buffer.alloc(11)), { code: 'IMAGE_TOO_BIG_FOR_DISK' })
})

t.test('a write error surfaces as the step\'s error', async (t) => {
  const disk = await openDisk('e.img', 8 * MiB)
  const writer = writerFor(disk)
  await writer.write(Buffer.alloc(HEAD_BYTES))
  await disk.close() // every later write fails with EBADF
  await t.rejects(async () => {
    await writer.write(Buffer.alloc(2 * MiB))
    await writer.finish()
  }, { code: 'RAW_WRITE_FAILED' })
})

t.test('onHead sees the first MiB before anything reaches the disk, and can refuse it', async (t) => {
  const disk = await openDisk('f.img', 8 * MiB)
  t.teardown(() => disk.close())
  const seen: number[] = []
  const writer = new SequentialWriter(disk, {
    slabBytes: 64 * 1024,
    limitBytes: disk.sizeBytes,
    tooBig: (n) => errors.imageTooBigForDisk(n, disk.path, disk.sizeBytes),
    writeFailed: (cause) => errors.rawWriteFailed(cause),
    onHead: (head) => {
      seen.push(head.length)
      if (head[0] === 0x51) throw errors.imageTypeMismatch('raw', 'qcow2')
    },
  })
  await writer.write(Buffer.alloc(HEAD_BYTES - 1, 1))
  t.same(seen, [], 'not yet complete')
  await writer.write(Buffer.alloc(2, 1))
  t.same(seen, [HEAD_BYTES])
  await writer.rewind()
  await t.rejects(writer.write(Buffer.alloc(3 * MiB, 0x51)), { code: 'IMAGE_TYPE_MISMATCH' })
  t.notOk(writer.wroteToDisk, 'nothing was written')
  t.ok(readFileSync(disk.path).equals(Buffer.alloc(8 * MiB, 0xee)))
})

t.test('hashWith: the head and every slab reach the digest once, in order, and the disk gets the bytes', async (t) => {
  const disk = await openDisk('hash.img', 8 * MiB)
  t.teardown(() => disk.close())
  const data = randomBytes(5 * MiB + 333)
  const writer = writerFor(disk)
  const digest = new WorkerDigest('sha512')
  writer.hashWith(digest)
  for (let at = 0; at < data.length; at += 7777) await writer.write(data.subarray(at, at + 7777))
  await writer.flushHash()
  t.equal(await digest.digestHex(), createHash('sha512').update(data).digest('hex'), 'digest of every byte')
  const head = await writer.finish()
  t.ok(head.equals(data.subarray(0, HEAD_BYTES)))
  t.ok(readFileSync(disk.path).subarray(HEAD_BYTES, data.length).equals(data.subarray(HEAD_BYTES)), 'the rest on the disk')
})

t.test('hashWith with bytes hashed elsewhere: only those after them are hashed (a switch from memory)', async (t) => {
  const disk = await openDisk('hash-switch.img', 4 * MiB)
  t.teardown(() => disk.close())
  const data = randomBytes(3 * MiB + 5)
  const already = MiB + 4000
  const writer = writerFor(disk)
  const digest = inlineDigest('sha256')
  writer.hashWith(digest, already)
  for (let at = 0; at < data.length; at += 65_536) await writer.write(data.subarray(at, at + 65_536))
  await writer.flushHash()
  t.equal(await digest.digestHex(), createHash('sha256').update(data.subarray(already)).digest('hex'))
  await writer.finish()
})

t.test('hashWith: an image shorter than the head is hashed whole by flushHash', async (t) => {
  const disk = await openDisk('hash-small.img', 2 * MiB)
  t.teardown(() => disk.close())
  const data = randomBytes(5000)
  const writer = writerFor(disk)
  const digest = inlineDigest('md5')
  writer.hashWith(digest)
  await writer.write(data)
  await writer.flushHash()
  t.equal(await digest.digestHex(), createHash('md5').update(data).digest('hex'))
  t.ok((await writer.finish()).equals(data))
})
