/**
 * runInstall's `beforeFirstWrite` hook: awaited exactly once, with the disk as opened, while the
 * disk still holds every byte it had (nothing of the image written yet): in memory mode, in stream
 * mode, for an image smaller than the held-back head (the GPT step writes first), and never for
 * an install that fails before writing.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runInstall, type InstallOptions } from '../../agent/install/run-install.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import { makeDirtyDisk, tempDir } from '../helpers/disk-files.js'
import { makeGptImage, makeImage, sha, startImageServer } from '../helpers/image-server.js'

const MiB = 1024 * 1024
const DISK_BYTES = 32 * MiB
const tmp = tempDir()
t.teardown(tmp.remove)
const fast: InstallOptions['downloadTuning'] = { retryBaseDelayMs: 5, idleTimeoutMs: 2000, connectTimeoutMs: 2000, maxAttempts: 2 }

function request (url: string, image: Buffer, hex = sha('sha256', image)): InstallRequest {
  return { source: 'install-start', imageUrl: url, imageType: 'raw', checksum: { type: 'sha256', hex }, httpHeaders: [], metadata: {} }
}

/** Half a MiB with an MBR partition table (sfdisk): all of it is the held-back head. */
function smallMbrImage (): Buffer {
  const file = join(tmp.path, 'small.raw')
  writeFileSync(file, makeImage(MiB / 2))
  execFileSync('sfdisk', ['--quiet', file], { input: 'start=64, type=83\n' })
  return readFileSync(file)
}

const cases = [
  { name: 'memory mode', image: makeGptImage(8 * MiB), stream: false },
  { name: 'stream mode', image: makeGptImage(8 * MiB), stream: true },
  { name: 'stream mode, an image under a MiB (the GPT step comes first)', image: smallMbrImage(), stream: true },
]

for (const c of cases) {
  t.test(`${c.name}: the hook runs once, before the disk changed`, async (t) => {
    const server = await startImageServer({ image: c.image })
    t.teardown(server.close)
    const disk = join(tmp.path, `${c.name.replace(/\W+/g, '-')}.img`)
    makeDirtyDisk(disk, DISK_BYTES)
    const before = readFileSync(disk)
    const calls: Array<{ path: string; sizeBytes: number; unchanged: boolean }> = []
    await runInstall({
      request: request(server.url(), c.image),
      diskPath: disk,
      stream: c.stream,
      downloadTuning: fast,
      beforeFirstWrite: async (target) => {
        calls.push({ ...target, unchanged: readFileSync(disk).equals(before) })
        await new Promise((resolve) => setTimeout(resolve, 20)) // a slow record holds the write back
      },
    })
    t.same(calls, [{ path: disk, sizeBytes: DISK_BYTES, unchanged: true }])
    t.notOk(readFileSync(disk).equals(before), 'then the install wrote')
  })
}

t.test('an install that fails before writing never calls it; a hook that fails stops the install before any write', async (t) => {
  const image = makeGptImage(8 * MiB)
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = join(tmp.path, 'fails.img')
  makeDirtyDisk(disk, DISK_BYTES)
  const before = readFileSync(disk)
  let calls = 0
  await t.rejects(runInstall({
    request: request(server.url(), image, '0'.repeat(64)),
    diskPath: disk,
    downloadTuning: fast,
    beforeFirstWrite: async () => { calls++ },
  }), { code: 'CHECKSUM_MISMATCH' })
  t.equal(calls, 0)
  for (const stream of [false, true]) {
    await t.rejects(runInstall({
      request: request(server.url(), image),
      diskPath: disk,
      stream,
      downloadTuning: fast,
      beforeFirstWrite: async () => { throw new Error('cannot record') },
    }))
    t.ok(readFileSync(disk).equals(before), `the disk is as it was (${stream ? 'stream' : 'memory'} mode)`)
  }
})
