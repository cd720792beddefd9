/**
 * `byoi-agent serve` as its own process: killed mid-install (SIGKILL), the next agent over the
 * same state dir reports the job INTERRUPTED; stopped with SIGTERM, it cancels the install, waits
 * for its end (the event stream gets the result), and exits 0.
 */
import t from 'tap'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { startService } from '../../agent/api/start-service.js'
import type { InstallStatus } from '../../agent/service/job-status.js'
import { makeDirtyDisk, readRange, tempDir } from '../helpers/disk-files.js'
import { makeGptImage } from '../helpers/image-server.js'
import { serveFile, startScriptedServer } from '../helpers/scripted-server.js'
import { AUTH, installStartBody, quietLogger, readEvents, startReportReceiver, TOKEN, waitFor, type SseEvent } from '../unit/api/api-test-helpers.js'

const MiB = 1024 * 1024
const DISK_BYTES = 32 * MiB
const image = makeGptImage(8 * MiB)
const tmp = tempDir()
t.teardown(tmp.remove)
const tokenFile = join(tmp.path, 'token')
writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
const MAIN = fileURLToPath(new URL('../../agent/main.ts', import.meta.url))

interface Agent { child: ChildProcess; url: string; stderr: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }

/** Starts the agent's own entry point (through the test's TypeScript loader) and waits for its URL. */
async function spawnAgent (args: string[]): Promise<Agent> {
  const argv = [...process.execArgv, MAIN, 'serve', '--listen', '127.0.0.1:0', '--token-file', tokenFile, ...args]
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => { stderr += c.toString() })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL in time; stderr: ${stderr}`)), 30_000)
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c.toString()
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)
      if (match?.[1] !== undefined) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    void exited.then(({ code }) => reject(new Error(`the agent exited (${code}); stderr: ${stderr}`)))
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, url, stderr: () => stderr, exited }
}

async function statusOf (url: string): Promise<InstallStatus> {
  return await (await request(`${url}/install/status`, { headers: AUTH })).body.json() as InstallStatus
}

async function startInstall (url: string, imageUrl: string): Promise<string> {
  const answer = await request(`${url}/install/start`, {
    method: 'POST',
    headers: { ...AUTH, 'content-type': 'application/json' },
    body: JSON.stringify(installStartBody(imageUrl)),
  })
  t.equal(answer.statusCode, 202)
  return (await answer.body.json() as { jobId: string }).jobId
}

t.test('killed while downloading into memory: the next agent reports INTERRUPTED_UNTOUCHED, the disk as it was', async (t) => {
  const images = await startScriptedServer((req, res) => serveFile(req, res, image, { stallAfterBytes: 2 * MiB }))
  t.teardown(images.close)
  const disk = join(tmp.path, 'killed.img')
  makeDirtyDisk(disk, DISK_BYTES)
  const untouched = readRange(disk, 0, DISK_BYTES)
  const stateDir = join(tmp.path, 'killed-state')
  const agent = await spawnAgent(['--disk', disk, '--state-dir', stateDir])
  const jobId = await startInstall(agent.url, images.url())
  // The download step is under way, and saved so.
  await waitFor('the saved download step', () => {
    try {
      const saved = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { status: InstallStatus }
      return saved.status.steps[1]?.status === 'doing'
    } catch {
      return false
    }
  })
  agent.child.kill('SIGKILL')
  t.match(await agent.exited, { signal: 'SIGKILL' })

  // The control plane hears of it from the restarted agent.
  const receiver = await startReportReceiver()
  t.teardown(receiver.close)
  const service = await startService({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    disk: { path: disk, auto: false, sizeBytes: null, model: null },
    stateDir,
    logger: quietLogger(),
    reportUrl: receiver.url,
  })
  t.teardown(service.close)
  const message = 'Install interrupted: the agent stopped during the install, the disk was not modified.'
  const status = await statusOf(service.url)
  t.match(status, { state: 'error', jobId, result: { code: 'INTERRUPTED_UNTOUCHED', message }, notes: [] })
  t.ok(readRange(disk, 0, DISK_BYTES).equals(untouched), 'the disk is exactly as it was')
  t.equal(status.steps[0]?.status, 'done')
  t.equal(status.steps[1]?.status, 'error', 'the step under way ended in error')
  t.ok(status.steps.slice(2).every((s) => s.status === 'todo'))
  const events = await readEvents(service.url)
  t.same(events.events.map((e) => e.event), ['status', 'result'], 'the stream tells the result and ends')
  // An id of the agent before the restart is unknown: the client gets the result; with this run's result id, 204.
  const run = /:([0-9a-f]{8}):\d+$/.exec(events.events[1]?.id ?? '')?.[1] ?? ''
  const before = await readEvents(service.url, { lastEventId: `${jobId}:${run === '00000000' ? '00000001' : '00000000'}:1` })
  t.same(before.events.map((e) => e.event), ['status', 'result'])
  const seen = await request(`${service.url}/install/events`, { headers: { ...AUTH, 'last-event-id': events.events[1]?.id ?? '' } })
  t.equal(seen.statusCode, 204)
  await seen.body.dump()
  await waitFor('the report', () => receiver.messages.length > 0)
  t.match(receiver.messages[0], { event: 'result', jobId, state: 'error', result: { code: 'INTERRUPTED_UNTOUCHED', message } })
  // A new install may start after it.
  const next = await startInstall(service.url, images.url())
  t.not(next, jobId)
  await request(`${service.url}/install/cancel`, { method: 'POST', headers: AUTH }).then(async (r) => r.body.dump())
  await service.runner.idle()
})

t.test('killed while writing (stream mode) over an old GPT: the next agent zeroes the first and last MiB, then reports INTERRUPTED', async (t) => {
  const big = makeGptImage(12 * MiB)
  // Past the head (1 MiB) and two 2 MiB slabs: some of the image is on the disk, the head is not.
  const images = await startScriptedServer((req, res) => serveFile(req, res, big, { stallAfterBytes: 7 * MiB }))
  t.teardown(images.close)
  const disk = join(tmp.path, 'writing.img')
  makeDirtyDisk(disk, DISK_BYTES)
  execFileSync('sgdisk', ['-o', '-n', '1:2048:+4M', '-c', '1:old-os', disk], { stdio: 'ignore' })
  const oldHead = readRange(disk, 0, MiB)
  const stateDir = join(tmp.path, 'writing-state')
  const agent = await spawnAgent(['--disk', disk, '--state-dir', stateDir, '--stream'])
  const jobId = await startInstall(agent.url, images.url())
  const written = { offset: MiB, length: 2 * MiB }
  await waitFor('image bytes on the disk past the head', () => {
    return readRange(disk, written.offset, written.length).equals(big.subarray(written.offset, written.offset + written.length))
  })
  const saved = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { diskWrite: unknown }
  t.match(saved.diskWrite, { path: disk, sizeBytes: DISK_BYTES }, 'the write was recorded before it began')
  agent.child.kill('SIGKILL')
  t.match(await agent.exited, { signal: 'SIGKILL' })
  t.ok(readRange(disk, 0, MiB).equals(oldHead), 'killed: the old partition table still heads a part-written disk')
  t.match(execFileSync('sgdisk', ['-p', disk], { encoding: 'utf8' }), /old-os/)

  const restarted = await spawnAgent(['--disk', disk, '--state-dir', stateDir])
  const status = await statusOf(restarted.url)
  t.match(status, {
    state: 'error',
    jobId,
    result: { code: 'INTERRUPTED', message: 'Install interrupted: the agent stopped during the install, the disk was left unbootable.' },
  })
  t.same(status.notes, [`The install was interrupted after it began writing to ${disk}: ` +
    'its first and last MiB were zeroed when the agent started again, so the partly written disk cannot boot.'])
  t.ok(readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)), 'the first MiB is zero')
  t.ok(readRange(disk, DISK_BYTES - MiB, MiB).equals(Buffer.alloc(MiB)), 'the last MiB is zero')
  restarted.child.kill('SIGTERM')
  t.same(await restarted.exited, { code: 0, signal: null })
  // Saved as over: a third start does not zero again nor report twice.
  const third = await spawnAgent(['--disk', disk, '--state-dir', stateDir])
  t.match(await statusOf(third.url), { state: 'error', jobId, result: { code: 'INTERRUPTED' } })
  third.child.kill('SIGTERM')
  await third.exited
})

t.test('SIGTERM: the running install is cancelled and waited for, the stream gets the result, exit 0', async (t) => {
  const images = await startScriptedServer((req, res) => serveFile(req, res, image, { stallAfterBytes: 2 * MiB }))
  t.teardown(images.close)
  const disk = join(tmp.path, 'term.img')
  makeDirtyDisk(disk, DISK_BYTES)
  const before = readRange(disk, 0, DISK_BYTES)
  const stateDir = join(tmp.path, 'term-state')
  const agent = await spawnAgent(['--disk', disk, '--state-dir', stateDir])
  const jobId = await startInstall(agent.url, images.url())
  const events: SseEvent[] = []
  const streamed = readEvents(agent.url, { onEvent: (e) => events.push(e) })
  await waitFor('the download', async () => (await statusOf(agent.url)).steps[1]?.status === 'doing')
  await waitFor('the stream', () => events.length > 0)
  agent.child.kill('SIGTERM')
  const stream = await streamed
  t.equal(stream.events.at(-1)?.event, 'result')
  t.same(stream.events.at(-1)?.data, {
    jobId,
    state: 'error',
    result: { code: 'CANCELLED_UNTOUCHED', message: 'Install cancelled, the disk was not modified.' },
  })
  t.same(await agent.exited, { code: 0, signal: null }, 'exit 0')
  t.match(agent.stderr(), /"msg":"shutting down"/)
  t.match(agent.stderr(), /"msg":"stopped"/)
  const saved = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { status: InstallStatus }
  t.match(saved.status, { state: 'error', jobId, result: { code: 'CANCELLED_UNTOUCHED' } })
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'the disk is exactly as it was')
  t.notMatch(agent.stderr(), TOKEN, 'the token is not in the log')
})
