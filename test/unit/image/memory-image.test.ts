import t from 'tap'
import { randomBytes } from 'node:crypto'
import { MemoryBudgetExceeded, MemoryImage, SLAB_BYTES } from '../../../agent/image/memory-image.js'
import { memoryImageOf } from '../../helpers/qcow2-fixtures.js'

t.test('holds the slabs in order and reads back any range', async (t) => {
  const data = randomBytes(SLAB_BYTES * 2 + 12345)
  const image = memoryImageOf(data)
  t.equal(image.sizeBytes, data.length)
  const pieces = [...image.pieces()]
  t.equal(pieces.length, 3, 'three 16 MiB slabs')
  t.ok(Buffer.concat(pieces.map((p) => p.data)).equals(data), 'pieces in order')
  t.same(pieces.map((p) => p.offset), [0, SLAB_BYTES, 2 * SLAB_BYTES])
  t.ok(image.read(SLAB_BYTES - 10, 20).equals(data.subarray(SLAB_BYTES - 10, SLAB_BYTES + 10)), 'read across a slab boundary')
  t.equal(image.read(data.length - 5, 100).length, 5, 'read past the end is short')
})

t.test('refuses to grow past its budget, without keeping the slab', async (t) => {
  const image = new MemoryImage(1000)
  image.adopt(Buffer.alloc(600))
  t.throws(() => image.adopt(Buffer.alloc(401)), MemoryBudgetExceeded)
  t.equal(image.sizeBytes, 600)
  image.adopt(Buffer.alloc(400))
  t.equal(image.sizeBytes, 1000)
  t.equal(image.nextSlabBytes(), 0, 'no room left')
  t.throws(() => memoryImageOf(Buffer.alloc(1001), 1000), MemoryBudgetExceeded, 'the fixture refuses as the download would')
})

t.test('a small budget asks for a small slab', async (t) => {
  t.equal(new MemoryImage(100).nextSlabBytes(), 100)
})

t.test('clear forgets everything', async (t) => {
  const image = new MemoryImage(1000)
  image.adopt(Buffer.alloc(600, 1))
  image.clear()
  t.equal(image.sizeBytes, 0)
  t.same([...image.pieces()], [])
})

t.test('view: zero-copy inside a slab, a copy across slabs, short at the end', async (t) => {
  const data = randomBytes(SLAB_BYTES + 1000)
  const image = memoryImageOf(data)
  const inside = image.view(10, 100)
  t.ok(inside.equals(data.subarray(10, 110)))
  t.equal(inside.buffer, [...image.pieces()][0]?.data.buffer, 'same memory')
  t.ok(image.view(SLAB_BYTES - 5, 10).equals(data.subarray(SLAB_BYTES - 5, SLAB_BYTES + 5)))
  t.equal(image.view(data.length - 3, 10).length, 3)
  t.equal(image.view(data.length + 3, 10).length, 0)
  t.throws(() => image.view(-1, 2), RangeError)
})

t.test('adopt keeps the slabs given, without copying, and counts them against the budget', async (t) => {
  const data = randomBytes(SLAB_BYTES + 500)
  const image = new MemoryImage(SLAB_BYTES + 1000)
  t.equal(image.nextSlabBytes(), SLAB_BYTES)
  const first = Buffer.from(new SharedArrayBuffer(SLAB_BYTES))
  data.copy(first, 0, 0, SLAB_BYTES)
  image.adopt(first)
  t.equal(image.nextSlabBytes(), 1000, 'the budget left')
  image.adopt(data.subarray(SLAB_BYTES))
  t.equal(image.sizeBytes, data.length)
  t.equal(image.view(10, 100).buffer, first.buffer, 'the same memory')
  t.ok(image.read(0, data.length).equals(data))
  t.throws(() => image.adopt(Buffer.alloc(501)), MemoryBudgetExceeded)
  t.equal(image.sizeBytes, data.length)
})
