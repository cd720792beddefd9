import t from 'tap'
import { LowSpeedWatch } from '../../../agent/download/low-speed-watch.js'

t.test('a trickle below the limit trips once a whole window has passed', async (t) => {
  const watch = new LowSpeedWatch({ limitBytesPerSecond: 1000, windowMs: 10_000, nowMs: 0 })
  let tripped: number | undefined
  let at = 0
  for (let s = 1; s <= 20 && tripped === undefined; s++) {
    tripped = watch.arrived(s * 1000, 1) // 1 byte/s, as no idle timeout would notice
    watch.waiting(s * 1000)
    at = s
  }
  t.equal(at, 10, 'after 10 s, not before')
  t.ok(tripped !== undefined && tripped < 2)
})

t.test('a steady rate above the limit never trips', async (t) => {
  const watch = new LowSpeedWatch({ limitBytesPerSecond: 1000, windowMs: 10_000, nowMs: 0 })
  for (let s = 1; s <= 100; s++) {
    t.equal(watch.arrived(s * 1000, 2000), undefined)
    watch.waiting(s * 1000)
  }
})

t.test('time in the sink does not count: a slow disk is not a slow server', async (t) => {
  const watch = new LowSpeedWatch({ limitBytesPerSecond: 1000, windowMs: 10_000, nowMs: 0 })
  let now = 0
  for (let i = 0; i < 50; i++) {
    now += 100 // 100 ms on the network for 1000 bytes: 10 kB/s
    t.equal(watch.arrived(now, 1000), undefined)
    now += 5000 // then 5 s in sink.write
    watch.waiting(now)
  }
})

t.test('a slow spell shorter than the window does not trip', async (t) => {
  const watch = new LowSpeedWatch({ limitBytesPerSecond: 1000, windowMs: 10_000, nowMs: 0 })
  let now = 0
  const step = (ms: number, bytes: number): number | undefined => {
    now += ms
    const r = watch.arrived(now, bytes)
    watch.waiting(now)
    return r
  }
  for (let i = 0; i < 20; i++) t.equal(step(1000, 100_000), undefined, 'fast')
  for (let i = 0; i < 5; i++) t.equal(step(1000, 1), undefined, 'five slow seconds, averaged with fast ones')
})
