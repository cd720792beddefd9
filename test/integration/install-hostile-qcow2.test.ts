/**
 * Issue 11 item 7, "a hostile qcow2 makes the agent unkillable": 512-byte clusters, every empty L1
 * range pointing at one shared empty L2 table, an ESP at 2 GiB whose `\EFI` directory is a
 * 4096-cluster chain. With efiBootloaderPath, the verify step used to walk 4 Mi L2 entries per
 * guest read, thousands of reads, without a turn of the event loop: no cancel, no /health, no
 * signal for about an hour. Here the install must end (refused: the file is not there), a cancel
 * during verify must end it untouched, and the service must answer meanwhile. No timing is
 * asserted; a hang ends in tap's timeout. The longest event-loop block is reported as a comment.
 */
import t from 'tap'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { request as httpRequest } from 'undici'
import { startService } from '../../agent/api/start-service.js'
import type { InstallStatus } from '../../agent/service/job-status.js'
import { runInstall } from '../../agent/install/run-install.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import { makeDirtyDisk, readRange, tempDir } from '../helpers/disk-files.js'
import { makeHostileEspQcow2 } from '../helpers/hostile-qcow2.js'
import { sha, startImageServer } from '../helpers/image-server.js'
import { expectInstallError } from '../helpers/tap.js'
import { AUTH, quietLogger, reinstallBody, TOKEN } from '../unit/api/api-test-helpers.js'

const MiB = 1024 * 1024
const hostile = makeHostileEspQcow2()
const DISK_BYTES = hostile.virtualSizeBytes + 128 * MiB // sparse
const tmp = tempDir()
t.teardown(tmp.remove)

let diskCount = 0
function newDisk (): { path: string; ends: () => Buffer } {
  const path = join(tmp.path, `disk-${diskCount++}.img`)
  makeDirtyDisk(path, DISK_BYTES)
  return { path, ends: () => Buffer.concat([readRange(path, 0, 2 * MiB), readRange(path, DISK_BYTES - 2 * MiB, 2 * MiB)]) }
}

function installRequest (url: string): InstallRequest {
  return {
    source: 'install-start',
    imageUrl: url,
    imageType: 'qcow2',
    checksum: { type: 'sha256', hex: sha('sha256', hostile.file) },
    httpHeaders: [],
    metadata: {},
    efiBootloaderPath: hostile.efiPath,
  }
}

t.test('hostile qcow2 with efiBootloaderPath: the install ends, refused before any write', async (t) => {
  const server = await startImageServer({ image: hostile.file })
  t.teardown(server.close)
  const disk = newDisk()
  const before = disk.ends()
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  const message = await expectInstallError(t, runInstall({ request: installRequest(server.url()), diskPath: disk.path }), 'EFI_BOOTLOADER_NOT_FOUND')
  delay.disable()
  t.match(message, /BOOTX64\.EFI/)
  t.ok(disk.ends().equals(before), 'the disk is untouched')
  t.comment(`longest event-loop block during the install: ${Math.round(delay.max / 1e6)} ms (a figure, not a check)`)
})

t.test('hostile qcow2: a cancel during verify ends in CANCELLED_UNTOUCHED', async (t) => {
  const server = await startImageServer({ image: hostile.file })
  t.teardown(server.close)
  const disk = newDisk()
  const before = disk.ends()
  const controller = new AbortController()
  let abortedInVerify = false
  const install = runInstall({
    request: installRequest(server.url()),
    diskPath: disk.path,
    signal: controller.signal,
    onEvent: (event) => {
      if (event.type === 'step' && event.step === 'verify' && event.status === 'doing') {
        controller.abort()
        abortedInVerify = true
      }
    },
  })
  const message = await expectInstallError(t, install, 'CANCELLED_UNTOUCHED')
  t.ok(abortedInVerify, 'the abort came as verify began')
  t.equal(message, 'Install cancelled, the disk was not modified.')
  t.ok(disk.ends().equals(before), 'the disk is untouched')
})

t.test('hostile qcow2 under serve: /health and /install/cancel answer while it runs', async (t) => {
  const server = await startImageServer({ image: hostile.file })
  t.teardown(server.close)
  const disk = newDisk()
  const service = await startService({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    disk: { path: disk.path, auto: false, sizeBytes: null, model: null },
    stateDir: join(tmp.path, 'state'),
    logger: quietLogger(),
    installOptions: {},
  })
  t.teardown(service.close)
  const post = async (path: string, body?: unknown): Promise<number> => {
    const answer = await httpRequest(`${service.url}${path}`, {
      method: 'POST',
      headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    await answer.body.dump()
    return answer.statusCode
  }
  const status = async (): Promise<InstallStatus> => {
    const answer = await httpRequest(`${service.url}/install/status`, { headers: AUTH })
    return await answer.body.json() as InstallStatus
  }

  const body = reinstallBody(server.url(), {
    imageType: 'qcow2',
    efiBootloaderPath: hostile.efiPath,
    imageCheckSum: sha('sha256', hostile.file),
    imageCheckSumType: 'sha256',
  })
  t.equal(await post('/install/start', body), 202)
  // Wait for verify (the download of 0.6 MiB is quick), then ask.
  let seen = await status()
  while (seen.state === 'running' && seen.steps.find((s) => s.name === 'verify')?.status !== 'doing') {
    await new Promise((resolve) => setTimeout(resolve, 5))
    seen = await status()
  }
  const health = await httpRequest(`${service.url}/health`)
  t.equal(health.statusCode, 200, '/health answers')
  t.same(await health.body.json(), { status: 'ok' })
  const cancel = await post('/install/cancel')
  t.ok(cancel === 202 || cancel === 409, `/install/cancel answers (${cancel}: 202 while running, 409 once ended)`)
  await service.runner.idle()
  const after = await status()
  t.equal(after.state, 'error')
  t.ok(['CANCELLED_UNTOUCHED', 'EFI_BOOTLOADER_NOT_FOUND'].includes(after.result?.code ?? ''), `cancelled, or refused first (${after.result?.code})`)
})
