import t from 'tap'
import { PlannedDisk, TAIL_ZERO_BYTES } from '../../../agent/disk/planned-disk.js'

const MiB = 1024 * 1024

function imageOf (bytes: Buffer): (data: Uint8Array, offset: number) => Promise<void> {
  return async (data, offset) => {
    if (offset + data.length > bytes.length) throw new RangeError('read past the image')
    data.set(bytes.subarray(offset, offset + data.length))
  }
}

t.test('reads the image where it has bytes and zeros past its end, never asking the image beyond it', async (t) => {
  const image = Buffer.alloc(3000, 0x11)
  const disk = new PlannedDisk(8 * MiB, 512, image.length, imageOf(image))
  const out = Buffer.alloc(4096, 0xff)
  await disk.read(out, 0)
  t.ok(out.subarray(0, 3000).equals(image))
  t.ok(out.subarray(3000).every((b) => b === 0), 'zeros past the image')
})

t.test('the disk\'s last MiB past the image is a planned write of zeros, first in order', async (t) => {
  const disk = new PlannedDisk(8 * MiB, 512, 4096, imageOf(Buffer.alloc(4096, 1)))
  t.equal(disk.writes.length, 0, 'nothing planned until asked')
  disk.zeroTailPastImage()
  t.equal(disk.writes.length, 1)
  t.same({ offset: disk.writes[0]?.offset, length: disk.writes[0]?.data.length }, { offset: 8 * MiB - TAIL_ZERO_BYTES, length: TAIL_ZERO_BYTES })
  t.ok(disk.writes[0]?.data.every((b) => b === 0))
  // An image that reaches into the last MiB: only the part past it is zeroed; one as large as the disk: nothing.
  const reaching = new PlannedDisk(8 * MiB, 512, 8 * MiB - 1000, imageOf(Buffer.alloc(0)))
  reaching.zeroTailPastImage()
  t.same(reaching.writes.map((w) => [w.offset, w.data.length]), [[8 * MiB - 1000, 1000]])
  const whole = new PlannedDisk(8 * MiB, 512, 8 * MiB, imageOf(Buffer.alloc(0)))
  whole.zeroTailPastImage()
  t.equal(whole.writes.length, 0)
})

t.test('writes are recorded in order and read back over the image, later ones over earlier ones', async (t) => {
  const image = Buffer.alloc(8192, 0x22)
  const disk = new PlannedDisk(8 * MiB, 512, image.length, imageOf(image))
  disk.zeroTailPastImage()
  await disk.write(Buffer.alloc(1024, 0x33), 4096)
  await disk.write(Buffer.alloc(512, 0x44), 4608)
  const out = Buffer.alloc(2048)
  await disk.read(out, 3584)
  t.ok(out.subarray(0, 512).every((b) => b === 0x22), 'the image before the writes')
  t.ok(out.subarray(512, 1024).every((b) => b === 0x33), 'the first write')
  t.ok(out.subarray(1024, 1536).every((b) => b === 0x44), 'the second write, over the first')
  t.ok(out.subarray(1536).every((b) => b === 0x22), 'the image again')
  t.equal(image[4096], 0x22, 'the image itself is never modified')
  t.equal(disk.writes.length, 3)
})

t.test('refuses ranges outside the disk and images larger than it', async (t) => {
  const disk = new PlannedDisk(MiB, 512, 0, imageOf(Buffer.alloc(0)))
  await t.rejects(disk.read(Buffer.alloc(512), MiB - 256), RangeError)
  await t.rejects(disk.write(Buffer.alloc(1), -1), RangeError)
  t.throws(() => new PlannedDisk(MiB, 512, MiB + 1, imageOf(Buffer.alloc(0))), RangeError)
})
