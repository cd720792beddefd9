import t from 'tap'
import { DEFAULT_CONNECTIONS, partWindowBytes } from '../../../agent/download/index.js'
import { connectionsWithin } from '../../../agent/install/fetch-image.js'

const MiB = 1024 * 1024

t.test('the window of parts takes at most a quarter of the memory budget', async (t) => {
  t.equal(connectionsWithin(20 * 1024 * MiB, undefined), DEFAULT_CONNECTIONS, 'a large budget: the default')
  t.equal(connectionsWithin(20 * 1024 * MiB, { connections: 16 }), 16, 'and what is asked')
  t.equal(connectionsWithin(256 * MiB, { connections: 8 }), 7, '256 MiB: 7 connections (a 64 MiB window: a part each and one more)')
  t.equal(partWindowBytes(7) * 4, 256 * MiB)
  t.equal(connectionsWithin(160 * MiB, undefined), 4, '160 MiB: the default 4 (a 40 MiB window)')
  t.equal(connectionsWithin(159 * MiB, undefined), 3, 'a MiB less: 3')
  t.equal(connectionsWithin(64 * MiB, undefined), 1, 'a small rescue system\'s 64 MiB: one connection')
  t.equal(connectionsWithin(1, { connections: 4 }), 1, 'never fewer than one')
  t.equal(connectionsWithin(64 * MiB, { connections: 4, partBytes: MiB }), 4, 'smaller parts fit more connections')
})
