/**
 * Review of issue 11's kill -9 recovery for the CLI (`install --state-dir`): the disk-write record
 * of an install still running is overwritten by a second `install` on the same disk, so when the
 * first is then killed, the next install cannot know the disk was part-written.
 */
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import { readFileSync, realpathSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { runCli } from '../../agent/cli.js'
import { JobStateStore } from '../../agent/service/job-state-store.js'
import { JobStatusTracker } from '../../agent/service/job-status.js'
import { makeDirtyDisk, readRange, tempDir } from '../helpers/disk-files.js'
import { startScriptedServer } from '../helpers/scripted-server.js'

const MiB = 1024 * 1024
const tmp = tempDir()
t.teardown(tmp.remove)

async function cli (args: string[], stdin: string): Promise<{ code: number; stderr: string }> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const err: Buffer[] = []
  stdout.resume()
  stderr.on('data', (c: Buffer) => err.push(c))
  const code = await runCli(args, { stdout, stderr, stdin: Readable.from([stdin]) })
  return { code, stderr: Buffer.concat(err).toString() }
}

t.test('a second `install` on a disk whose install is still running is refused and leaves its record: ' +
  'once the first is killed, the next install settles its part-written disk', async (t) => {
  const server = await startScriptedServer((_req, res) => { res.writeHead(404).end() })
  t.teardown(server.close)
  const disk = join(tmp.path, 'disk.img')
  makeDirtyDisk(disk, 16 * MiB)
  execFileSync('sgdisk', ['-o', '-n', '1:2048:0', '-c', '1:old-os', disk], { stdio: 'ignore' })
  const stateDir = join(tmp.path, 'state')
  execFileSync('mkdir', ['-m', '0700', stateDir])

  // Install A: running in another process (a stand-in that this test started), its disk write recorded, as A's journal saves it.
  const first = spawn('sleep', ['300'], { stdio: 'ignore' })
  t.teardown(() => { if (first.exitCode === null && first.signalCode === null) first.kill('SIGKILL') })
  const pid = first.pid ?? 0
  const resolved = realpathSync(disk)
  const fileName = `disk-${createHash('sha256').update(resolved).digest('hex').slice(0, 16)}.json`
  const store = new JobStateStore(stateDir, undefined, fileName)
  const tracker = new JobStatusTracker(randomUUID(), { path: resolved, auto: false, sizeBytes: null, model: null }, Date.now())
  t.ok(await store.saveNow(tracker.snapshot(), { path: resolved, sizeBytes: 16 * MiB, at: new Date().toISOString() }), 'install A\'s state saved')
  const statePath = join(stateDir, fileName)
  const saved = JSON.parse(readFileSync(statePath, 'utf8')) as { pid: number }
  writeFileSync(statePath, JSON.stringify({ ...saved, pid }))
  const oldHead = readRange(disk, 0, MiB)

  // Install B on the same disk while A runs: it fails (404), as a retry script's would.
  const payload = JSON.stringify({
    templateName: 'byoi_64',
    userMetadata: [{ key: 'imageURL', value: server.url('/gone.raw') }, { key: 'imageType', value: 'raw' }],
  })
  await cli(['install', '--payload', '-', '--disk', disk, '--state-dir', stateDir], payload)

  // A is killed -9 mid-write.
  const exited = new Promise<void>((resolve) => first.on('exit', () => resolve()))
  first.kill('SIGKILL')
  await exited

  // Install C: A's part-written disk must be found and made unbootable.
  const third = await cli(['install', '--payload', '-', '--disk', disk, '--state-dir', stateDir], payload)
  t.match(third.stderr, /A previous install on .* did not finish/, 'the killed install is reported')
  t.notOk(readRange(disk, 0, MiB).equals(oldHead), 'the old table no longer heads the part-written disk')
})
