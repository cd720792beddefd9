import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HEAD_BYTES } from '../../../agent/disk/boot-area.js'
import { SlabFeed } from '../../../agent/download/slab-feed.js'
import { InstallSteps } from '../../../agent/install/install-steps.js'
import { RawStreamStage } from '../../../agent/install/raw-stream-stage.js'
import { Target } from '../../../agent/install/target.js'
import type { InstallRequest } from '../../../agent/payload/install-request.js'
import { tempDir } from '../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)
const MiB = 1024 * 1024
const request: InstallRequest = { source: 'install-start', imageUrl: 'http://127.0.0.1/x', imageType: 'raw', httpHeaders: [], metadata: {} }

async function openTarget (name: string, sizeBytes: number, fill = 0xee): Promise<Target> {
  const path = join(tmp.path, name)
  writeFileSync(path, Buffer.alloc(sizeBytes, fill))
  return await Target.open(path)
}

function stageFor (target: Target): RawStreamStage {
  return new RawStreamStage({ request, target, memoryLimitBytes: 0, steps: new InstallSteps(() => {}), emit: () => {}, signal: undefined, logger: undefined })
}

/** Random bytes with an MBR in their first sector: one Linux partition of 100 sectors at LBA 1. */
function imageBytes (length: number): Buffer {
  const data = randomBytes(length)
  data.fill(0, 446, 510)
  data[446 + 4] = 0x83
  data.writeUInt32LE(1, 446 + 8)
  data.writeUInt32LE(100, 446 + 12)
  data[510] = 0x55
  data[511] = 0xaa
  return data
}

async function feed (sink: SlabFeed, data: Buffer, chunk = 7777): Promise<void> {
  for (let at = 0; at < data.length; at += chunk) await sink.write(data.subarray(at, at + chunk))
}

t.test('writes everything but the first MiB, which the target holds back; the digest is of every byte, in order', async (t) => {
  const target = await openTarget('a.img', 8 * MiB)
  t.teardown(() => target.close())
  const data = imageBytes(5 * MiB + 333)
  const stage = stageFor(target)
  const slabs = new SlabFeed(stage, 'sha512')
  await feed(slabs, data)
  const digest = await slabs.end()
  await stage.end()
  t.equal(digest, createHash('sha512').update(data).digest('hex'), 'digest of every byte')
  t.equal((await stage.verify()).imageBytes, data.length)
  t.ok(target.head.equals(data.subarray(0, HEAD_BYTES)), 'the head is the first MiB')
  const onDisk = readFileSync(target.path)
  t.ok(onDisk.subarray(0, HEAD_BYTES).equals(Buffer.alloc(HEAD_BYTES, 0xee)), 'first MiB not written')
  t.ok(onDisk.subarray(HEAD_BYTES, data.length).equals(data.subarray(HEAD_BYTES)), 'the rest is')
  t.ok(target.touched)
})

t.test('an image smaller than a MiB never touches the disk', async (t) => {
  const target = await openTarget('b.img', 4 * MiB)
  t.teardown(() => target.close())
  const data = imageBytes(1000)
  const stage = stageFor(target)
  const slabs = new SlabFeed(stage, 'md5')
  await slabs.write(data)
  t.equal(await slabs.end(), createHash('md5').update(data).digest('hex'))
  await stage.end()
  t.ok(target.head.subarray(0, 1000).equals(data))
  t.ok(target.head.subarray(1000).equals(Buffer.alloc(HEAD_BYTES - 1000)), 'zeros past the image')
  t.notOk(target.touched)
})

t.test('rewind starts again at byte 0, with a new digest', async (t) => {
  const target = await openTarget('c.img', 8 * MiB)
  t.teardown(() => target.close())
  const first = imageBytes(3 * MiB)
  const second = imageBytes(2 * MiB + 5)
  const stage = stageFor(target)
  const slabs = new SlabFeed(stage, 'sha256')
  await feed(slabs, first)
  await slabs.rewind()
  await feed(slabs, second, 65_536)
  t.equal(await slabs.end(), createHash('sha256').update(second).digest('hex'))
  await stage.end()
  t.equal((await stage.verify()).imageBytes, second.length)
  t.ok(target.head.equals(second.subarray(0, HEAD_BYTES)))
  t.ok(readFileSync(target.path).subarray(HEAD_BYTES, second.length).equals(second.subarray(HEAD_BYTES)))
})

t.test('a slab past the disk\'s end is refused before it is written', async (t) => {
  const target = await openTarget('d.img', 3 * MiB)
  t.teardown(() => target.close())
  const stage = stageFor(target)
  const slabs = new SlabFeed(stage, undefined)
  const data = imageBytes(3 * MiB + 10)
  await t.rejects(async () => {
    await feed(slabs, data, 65_536)
    await slabs.end()
  }, { code: 'IMAGE_TOO_BIG_FOR_DISK' })
  await stage.settle()
  const onDisk = readFileSync(target.path)
  t.ok(onDisk.subarray(2 * MiB).equals(Buffer.alloc(MiB, 0xee)), 'the slab that did not fit was not written')
})

t.test('a write error surfaces as the step\'s error', async (t) => {
  const target = await openTarget('e.img', 8 * MiB)
  const stage = stageFor(target)
  const slabs = new SlabFeed(stage, undefined)
  await feed(slabs, imageBytes(2 * MiB), 65_536)
  await target.close() // every later write fails with EBADF
  await t.rejects(async () => {
    await feed(slabs, randomBytes(4 * MiB), 65_536)
    await slabs.end()
    await stage.end()
  }, { code: 'RAW_WRITE_FAILED' })
})

t.test('the head is checked before anything reaches the disk, and can refuse it', async (t) => {
  const target = await openTarget('f.img', 8 * MiB)
  t.teardown(() => target.close())
  const stage = stageFor(target)
  const slabs = new SlabFeed(stage, undefined)
  const qcow2 = Buffer.alloc(3 * MiB, 0x51)
  Buffer.from([0x51, 0x46, 0x49, 0xfb]).copy(qcow2) // QFI\xfb: a qcow2 declared raw
  await t.rejects(feed(slabs, qcow2, 65_536), { code: 'IMAGE_TYPE_MISMATCH' })
  t.notOk(target.touched, 'nothing was written')
  t.ok(readFileSync(target.path).equals(Buffer.alloc(8 * MiB, 0xee)))
})
