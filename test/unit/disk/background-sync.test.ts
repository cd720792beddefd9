import t from 'tap'
import { BackgroundSync } from '../../../agent/disk/background-sync.js'
import type { Disk } from '../../../agent/disk/disk.js'

function fakeDisk (behaviour: { fail?: boolean } = {}): { disk: Disk; syncs: () => number; release: () => void } {
  let count = 0
  let release: () => void = () => {}
  const disk = {
    sync: async () => {
      count++
      await new Promise<void>((resolve) => { release = resolve })
      if (behaviour.fail === true) throw new Error('EIO')
    },
  } as unknown as Disk
  return { disk, syncs: () => count, release: () => release() }
}

t.test('a sync starts every N bytes, one at a time', async (t) => {
  const { disk, syncs, release } = fakeDisk()
  const sync = new BackgroundSync(disk, 100)
  sync.wrote(60)
  t.equal(syncs(), 0)
  sync.wrote(60)
  t.equal(syncs(), 1, 'started at 120 bytes')
  sync.wrote(500)
  t.equal(syncs(), 1, 'not while one runs')
  release()
  await sync.settle()
  sync.wrote(100)
  t.equal(syncs(), 2)
  release()
  await sync.settle()
})

t.test('a failed background sync is thrown by settle', async (t) => {
  const { disk, release } = fakeDisk({ fail: true })
  const sync = new BackgroundSync(disk, 10)
  sync.wrote(10)
  release()
  await t.rejects(sync.settle(), { message: 'EIO' })
})
