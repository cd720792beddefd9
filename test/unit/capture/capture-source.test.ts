import t from 'tap'
import { CaptureSource, type SourceDisk } from '../../../agent/capture/capture-source.js'
import { scanDisk } from '../../../agent/capture/scan-disk.js'
import { FreeSpace } from '../../../agent/capture/free-space.js'
import { expectInstallError } from '../../helpers/tap.js'

/** A disk of `sizeBytes` whose reads fail from `failAt` on (EIO, as a dying disk's), its size as `measured` says. */
function fakeDisk (sizeBytes: number, failAt: number, measured = sizeBytes): SourceDisk {
  return {
    path: '/dev/fake',
    sizeBytes,
    logicalSectorBytes: 512,
    read: async (data, offset) => {
      if (offset + data.length > failAt) throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })
      data.fill(1)
    },
    measureSize: async () => measured,
  }
}

t.test('a read that fails is CAPTURE_READ_FAILED naming the byte, not an internal error; the scan stops there', async (t) => {
  const source = new CaptureSource(fakeDisk(16 * 1024 * 1024, 8 * 1024 * 1024))
  const message = await expectInstallError(t, scanDisk(source, new FreeSpace(), 65536), 'CAPTURE_READ_FAILED')
  t.equal(message, 'Could not capture disk /dev/fake: a read failed at byte 8388608, nothing was captured.')
})

t.test('checkUnchanged: the same size passes; another size, or none measurable, is CAPTURE_READ_FAILED', async (t) => {
  await new CaptureSource(fakeDisk(4096, Infinity)).checkUnchanged()
  const grown = await expectInstallError(t, new CaptureSource(fakeDisk(4096, Infinity, 8192)).checkUnchanged(), 'CAPTURE_READ_FAILED')
  t.match(grown, /it changed size \(4096 bytes, now 8192\)/)
  const gone = new CaptureSource({ ...fakeDisk(4096, Infinity), measureSize: async () => await Promise.reject(new Error('ENODEV')) })
  t.match(await expectInstallError(t, gone.checkUnchanged(), 'CAPTURE_READ_FAILED'), /its size could not be measured again/)
})

t.test('a capture\'s source is never written', async (t) => {
  await t.rejects(new CaptureSource(fakeDisk(4096, Infinity)).write(), /never written/)
})
