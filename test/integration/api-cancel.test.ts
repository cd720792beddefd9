/**
 * POST /install/cancel on a real install whose download stalls mid-body: before any write the
 * disk is untouched (CANCELLED_UNTOUCHED); streaming, after writing began, its first and last MiB
 * are zeroed (CANCELLED). The event stream tells it and ends.
 */
import t from 'tap'
import { join } from 'node:path'
import { request } from 'undici'
import { startService, type Service } from '../../agent/api/start-service.js'
import type { InstallStatus } from '../../agent/service/job-status.js'
import { makeDirtyDisk, readRange, tempDir } from '../helpers/disk-files.js'
import { makeGptImage, sha } from '../helpers/image-server.js'
import { serveFile, startScriptedServer } from '../helpers/scripted-server.js'
import type { TapTest } from '../helpers/tap.js'
import { AUTH, installStartBody, quietLogger, readEvents, TOKEN, type SseEvent } from '../unit/api/api-test-helpers.js'

const MiB = 1024 * 1024
const DISK_BYTES = 64 * MiB
const image = makeGptImage(16 * MiB)
const tmp = tempDir()
t.teardown(tmp.remove)

async function serviceFor (t: TapTest, name: string, stream: boolean): Promise<{ service: Service; disk: string }> {
  const disk = join(tmp.path, `${name}.img`)
  makeDirtyDisk(disk, DISK_BYTES)
  const service = await startService({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    disk: { path: disk, auto: false, sizeBytes: null, model: null },
    stateDir: join(tmp.path, `${name}-state`),
    logger: quietLogger(),
    installOptions: { stream },
  })
  t.teardown(service.close)
  return { service, disk }
}

async function status (service: Service): Promise<InstallStatus> {
  const answer = await request(`${service.url}/install/status`, { headers: AUTH })
  return await answer.body.json() as InstallStatus
}

async function post (service: Service, path: string, body?: unknown): Promise<{ statusCode: number; json: unknown }> {
  const answer = await request(`${service.url}${path}`, {
    method: 'POST',
    headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { statusCode: answer.statusCode, json: await answer.body.json() }
}

/** Resolves once the image's bytes at 2 MiB are on the disk (the streamed write began). */
async function reachedDisk (disk: string): Promise<void> {
  const at = 2 * MiB
  const expected = image.subarray(at, at + 64 * 1024)
  for (const until = Date.now() + 20_000; Date.now() < until;) {
    if (readRange(disk, at, expected.length).equals(expected)) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error('the streamed bytes never reached the disk')
}

for (const stream of [false, true]) {
  const mode = stream ? 'stream' : 'memory'
  t.test(`${mode} mode: cancel mid-download`, async (t) => {
    // The body stops after 6 MiB of 16, the connection left open.
    const images = await startScriptedServer((req, res) => serveFile(req, res, image, { stallAfterBytes: 6 * MiB }))
    t.teardown(images.close)
    const { service, disk } = await serviceFor(t, `cancel-${mode}`, stream)
    const before = readRange(disk, 0, DISK_BYTES)

    const body = installStartBody(images.url(), [{ key: 'imageCheckSum', value: sha('sha256', image) }, { key: 'imageCheckSumType', value: 'sha256' }])
    const started = await post(service, '/install/start', body)
    t.equal(started.statusCode, 202)
    const { jobId } = started.json as { jobId: string }

    let cancelled: Promise<{ statusCode: number; json: unknown }> | undefined
    const events: SseEvent[] = []
    const streamed = readEvents(service.url, {
      onEvent: (event) => {
        events.push(event)
        if (cancelled !== undefined || event.event !== 'progress') return
        // Once bytes flow (streaming: once some reached the disk), cancel.
        cancelled = (stream ? reachedDisk(disk) : Promise.resolve()).then(async () => post(service, '/install/cancel'))
      },
    })
    const result = await streamed
    t.ok(cancelled !== undefined, 'cancel was sent')
    const cancel = await cancelled
    t.same(cancel, { statusCode: 202, json: { jobId } })
    t.equal(result.events.at(-1)?.event, 'result', 'the stream ends with the result')

    const after = await status(service)
    const download = after.steps.find((s) => s.name === 'download')
    t.equal(download?.status, 'error', 'the download step ended in error')
    if (stream) {
      t.match(after, { state: 'error', jobId, result: { code: 'CANCELLED', message: 'Install cancelled, the disk was left unbootable.' } })
      t.ok(readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)), 'first MiB zeroed')
      t.ok(readRange(disk, DISK_BYTES - MiB, MiB).equals(Buffer.alloc(MiB)), 'last MiB zeroed')
    } else {
      t.match(after, { state: 'error', jobId, result: { code: 'CANCELLED_UNTOUCHED', message: 'Install cancelled, the disk was not modified.' } })
      t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'the disk is exactly as it was')
    }
    t.same(result.events.at(-1)?.data, { jobId, state: 'error', result: after.result })

    // Nothing runs any more: a second cancel is refused, a new install may start.
    t.same(await post(service, '/install/cancel'), { statusCode: 409, json: { code: 'NOT_RUNNING', message: 'No install is running.' } })
  })
}

t.test('409 while an install runs, and the refusal leaves the running job alone', async (t) => {
  const images = await startScriptedServer((req, res) => serveFile(req, res, image, { stallAfterBytes: MiB }))
  t.teardown(images.close)
  const { service } = await serviceFor(t, 'busy', false)
  const first = await post(service, '/install/start', installStartBody(images.url()))
  t.equal(first.statusCode, 202)
  const { jobId } = first.json as { jobId: string }
  const second = await post(service, '/install/start', installStartBody(images.url()))
  t.same(second, { statusCode: 409, json: { code: 'BUSY', message: `An install is already running, job ${jobId}.` } })
  t.match(await status(service), { state: 'running', jobId })
  t.equal((await post(service, '/install/cancel')).statusCode, 202)
  await service.runner.idle()
  t.match(await status(service), { state: 'error', result: { code: 'CANCELLED_UNTOUCHED' } })
})
