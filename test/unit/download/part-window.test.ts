import t from 'tap'
import { PartWindow } from '../../../agent/download/part-window.js'

t.test('parts are claimed in order, handed over in order whatever order they arrive in', async (t) => {
  const window = new PartWindow<string>(4, 4)
  const claimed = [await window.claim(), await window.claim(), await window.claim(), await window.claim(), await window.claim()]
  t.same(claimed, [0, 1, 2, 3, undefined], 'every part once, then none')
  window.fill(2, 'c')
  window.fill(1, 'b')
  const first = window.next()
  window.fill(0, 'a')
  t.equal(await first, 'a', 'the next part waits for part 0')
  window.handOver()
  t.equal(await window.next(), 'b')
  window.handOver()
  t.equal(await window.next(), 'c')
  window.handOver()
  window.fill(3, 'd')
  t.equal(await window.next(), 'd')
  window.handOver()
  t.equal(await window.next(), undefined, 'after the last part')
  t.equal(window.peakHeld, 4)
})

t.test('a full window holds the next claim until the oldest part is handed over', async (t) => {
  const window = new PartWindow<string>(10, 2)
  t.equal(await window.claim(), 0)
  t.equal(await window.claim(), 1)
  let third: number | undefined | 'waiting' = 'waiting'
  const claim = window.claim().then((index) => { third = index })
  window.fill(1, 'b')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(third, 'waiting', 'part 1 arrived, but part 0 is still held')
  window.fill(0, 'a')
  t.equal(await window.next(), 'a')
  window.handOver()
  await claim
  t.equal(third, 2, 'room once part 0 went')
  t.equal(window.peakHeld, 2)
})

t.test('close wakes every waiter with undefined', async (t) => {
  const window = new PartWindow<string>(10, 1)
  t.equal(await window.claim(), 0)
  const claim = window.claim()
  const next = window.next()
  window.close()
  t.equal(await claim, undefined)
  t.equal(await next, undefined)
})

t.test('a part not claimed, or filled twice, is a bug: RangeError', async (t) => {
  const window = new PartWindow<string>(3, 3)
  t.throws(() => window.fill(0, 'a'), RangeError)
  await window.claim()
  window.fill(0, 'a')
  t.throws(() => window.fill(0, 'a'), RangeError)
  t.throws(() => new PartWindow<string>(0, 1), RangeError)
})
