import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { EXIT_INSTALL_FAILED, EXIT_OK, EXIT_USAGE } from '../../agent/cli.js'
import { cli } from '../helpers/run-cli.js'
import { blkidAt, makeDirtyDisk, readRange, tempDir } from '../helpers/disk-files.js'
import { gptDataRange, makeGptImage, sha, startImageServer } from '../helpers/image-server.js'
import { serveFile, startScriptedServer } from '../helpers/scripted-server.js'
import { waitFor } from '../unit/api/api-test-helpers.js'

const MiB = 1024 * 1024
const image = makeGptImage(3 * MiB)
const tmp = tempDir()
t.teardown(tmp.remove)


function payload (url: string, extra: Array<{ key: string; value: string }> = []): string {
  return JSON.stringify({
    details: { customHostname: 'cli-test' },
    templateName: 'byoi_64',
    userMetadata: [
      { key: 'imageURL', value: url },
      { key: 'imageType', value: 'raw' },
      { key: 'imageCheckSum', value: sha('sha256', image) },
      { key: 'imageCheckSumType', value: 'sha256' },
      ...extra,
    ],
  })
}

t.test('install: exit 0, the result message last on stdout, progress on stderr', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = join(tmp.path, 'ok.img')
  makeDirtyDisk(disk, 16 * MiB)
  const file = join(tmp.path, 'ok.json')
  writeFileSync(file, payload(server.url()))
  const run = await cli(['install', '--payload', file, '--disk', disk])
  t.equal(run.code, EXIT_OK)
  t.equal(run.stdout, `Image installed on ${disk}: ${image.length} bytes of raw written from memory, sha256 verified.\n`)
  t.match(run.stderr, /download: doing/)
  t.match(run.stderr, /finish: done/)
  const data = gptDataRange(image)
  t.ok(readRange(disk, data.offset, data.length).equals(image.subarray(data.offset, data.offset + data.length)), 'the image\'s data is on the disk')
  t.match(run.stderr, /configdrive: done/)
})

t.test('--json: one object with status, code, message, bytes, digest, notes', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = join(tmp.path, 'json.img')
  makeDirtyDisk(disk, 16 * MiB)
  const run = await cli(['install', '--payload', '-', '--disk', disk, '--json', '--stream', '--config-drive', 'fat'], payload(server.url()))
  t.equal(run.code, EXIT_OK)
  t.same(JSON.parse(run.stdout), {
    status: 'done',
    code: 'INSTALLED',
    message: `Image installed on ${disk}: ${image.length} bytes of raw written while streaming, sha256 verified.`,
    bytes: image.length,
    digest: { type: 'sha256', hex: sha('sha256', image) },
    notes: [],
  })
  const dump = execFileSync('sfdisk', ['--dump', disk], { encoding: 'utf8' })
  const offset = Number(/start=\s*(\d+), size=\s*\d+, type=[^,]*, uuid=[^,]*, name="config-2"/.exec(dump)?.[1]) * 512
  t.match(blkidAt(disk, offset), { LABEL: 'config-2', TYPE: 'vfat' }, '--config-drive fat forced FAT on a 512-byte disk')
})

t.test('an install failure: exit 1 and the OVH message', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = join(tmp.path, 'bad.img')
  makeDirtyDisk(disk, 16 * MiB)
  const body = JSON.parse(payload(server.url())) as { userMetadata: Array<{ key: string; value: string }> }
  const wrong = '0'.repeat(64)
  body.userMetadata[2] = { key: 'imageCheckSum', value: wrong }
  const run = await cli(['install', '--payload', '-', '--disk', disk, '--json'], JSON.stringify(body))
  t.equal(run.code, EXIT_INSTALL_FAILED)
  t.same(JSON.parse(run.stdout), {
    status: 'error',
    code: 'CHECKSUM_MISMATCH',
    message: `Bad sha256 for downloaded file, got: ${sha('sha256', image)} while expecting ${wrong}.`,
    bytes: null,
    digest: null,
    notes: [],
  })
})

t.test('--json: the notes of the install, such as a switch to streaming over the memory budget', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = join(tmp.path, 'notes.img')
  makeDirtyDisk(disk, 16 * MiB)
  const run = await cli(['install', '--payload', '-', '--disk', disk, '--json', '--memory-limit', String(image.length - 1)], payload(server.url()))
  t.equal(run.code, EXIT_OK)
  const outcome = JSON.parse(run.stdout) as { status: string; notes: string[] }
  t.equal(outcome.status, 'done')
  t.same(outcome.notes, [
    `The image is larger than the memory budget of ${image.length - 1} bytes: streaming it to the disk, the first MiB held back until verified.`,
  ])
})

t.test('a refused payload: exit 1 with the field named', async (t) => {
  const run = await cli(
    ['install', '--payload', '-', '--disk', '/nonexistent'],
    '{"templateName":"byoi_64","userMetadata":[{"key":"imageType","value":"raw"}]}',
  )
  t.equal(run.code, EXIT_INSTALL_FAILED)
  t.equal(run.stdout, 'Missing imageURL, it is required.\n')
  const notJson = await cli(['install', '--payload', '-', '--disk', '/nonexistent'], '{not json')
  t.equal(notJson.code, EXIT_INSTALL_FAILED)
  t.equal(notJson.stdout, 'Bad payload, expected: a JSON document.\n')
})

t.test('bad usage: exit 2 and the usage on stderr', async (t) => {
  const usages = [
    [],
    ['frobnicate'],
    ['install'],
    ['install', '--payload', 'x'],
    ['install', '--disk', 'x'],
    ['install', '--payload', 'x', '--disk', 'y', '--memory-limit', 'lots'],
    ['install', '--payload', 'x', '--disk', 'y', '--config-drive', 'ext4'],
    ['install', '--bogus'],
    ['install', '--payload', join(tmp.path, 'missing.json'), '--disk', 'y'],
    ['install', '--payload', 'x', '--disk', 'y', '--low-speed-limit', 'slow'],
    ['install', '--payload', 'x', '--disk', 'y', '--low-speed-time', '0'],
    ['install', '--payload', 'x', '--disk', 'y', '--download-deadline', '1.5'],
    ['install', '--payload', 'x', '--disk', 'y', '--download-deadline', '9999999'],
    ['install', '--payload', 'x', '--disk', 'y', '--connections', '0'],
    ['install', '--payload', 'x', '--disk', 'y', '--connections', '17'],
    ['install', '--payload', 'x', '--disk', 'y', '--connections', '2.5'],
    ['install', '--payload', 'x', '--disk', 'y', '--connections', 'many'],
  ]
  for (const args of usages) {
    const run = await cli(args)
    t.equal(run.code, EXIT_USAGE, args.join(' '))
    t.match(run.stderr, /Usage:/)
    t.equal(run.stdout, '')
  }
  const help = await cli(['--help'])
  t.equal(help.code, EXIT_OK)
  t.match(help.stdout, /byoi-agent install --payload FILE --disk PATH/)
})

t.test('--download-deadline reaches the download', async (t) => {
  // A server that sends the first bytes and then nothing: only the idle timeout (60 s) would end it.
  const server = await startScriptedServer((req, res) => serveFile(req, res, image, { stallAfterBytes: 1000 }))
  t.teardown(server.close)
  const disk = join(tmp.path, 'deadline.img')
  makeDirtyDisk(disk, 16 * MiB)
  const run = await cli(['install', '--payload', '-', '--disk', disk, '--json', '--download-deadline', '1', '--log-level', 'error'], payload(server.url()))
  t.equal(run.code, EXIT_INSTALL_FAILED)
  t.match(JSON.parse(run.stdout), { status: 'error', code: 'DOWNLOAD_FAILED' })
  t.match(run.stderr, /not done within the deadline of 1000 ms/)
  t.equal(server.requests.length, 1)
})

t.test('--connections reaches the download: 1 is one GET, 3 asks the first part by Range, then the others', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, image, { etag: '"cli"' }))
  t.teardown(server.close)
  const disk = join(tmp.path, 'connections.img')
  makeDirtyDisk(disk, 16 * MiB)
  const one = await cli(['install', '--payload', '-', '--disk', disk, '--json', '--connections', '1'], payload(server.url()))
  t.equal(one.code, EXIT_OK)
  t.same(server.requests.map((r) => r.headers.range), [undefined], 'one GET')
  server.requests.length = 0
  const three = await cli(['install', '--payload', '-', '--disk', disk, '--json', '--connections', '3'], payload(server.url()))
  t.equal(three.code, EXIT_OK)
  t.equal(server.requests[0]?.headers.range, 'bytes=0-1048575', 'the first part (1 MiB)')
  t.ok(server.requests.length > 1 && server.requests.slice(1).every((r) => r.headers['if-range'] === '"cli"'), 'the other parts by Range, If-Range')
})

t.test('secrets never reach the log, the progress or the result', async (t) => {
  const server = await startImageServer({ image, authorization: 'Basic dXNlcjpzZWNyZXQtcGFzcw==' })
  t.teardown(server.close)
  const disk = join(tmp.path, 'secret.img')
  makeDirtyDisk(disk, 16 * MiB)
  const url = server.url('/image.raw?X-Amz-Signature=sig-secret-123').replace('http://', 'http://user:url-secret-456@')
  const headers = [{ key: 'httpHeaders0Key', value: 'Authorization' }, { key: 'httpHeaders0Value', value: 'Basic dXNlcjpzZWNyZXQtcGFzcw==' }]
  const ok = await cli(['install', '--payload', '-', '--disk', disk, '--log-level', 'trace'], payload(url, headers))
  t.equal(ok.code, EXIT_OK)
  const wrongHeaders = [{ key: 'httpHeaders0Key', value: 'Authorization' }, { key: 'httpHeaders0Value', value: 'Basic d3Jvbmc6c2VjcmV0' }]
  const failed = await cli(['install', '--payload', '-', '--disk', disk, '--log-level', 'trace'], payload(url, wrongHeaders))
  t.equal(failed.code, EXIT_INSTALL_FAILED)
  t.match(failed.stdout, /^Could not download image located: `http:\/\/127\.0\.0\.1:\d+\/image\.raw\?X-Amz-Signature=REDACTED`\.\n$/)
  for (const text of [ok.stdout, ok.stderr, failed.stdout, failed.stderr]) {
    for (const secret of ['dXNlcjpzZWNyZXQtcGFzcw==', 'd3Jvbmc6c2VjcmV0', 'url-secret-456', 'sig-secret-123']) t.notMatch(text, secret)
  }
  t.match(failed.stderr, /"level":50/, 'the failure was logged')
})

t.test('a payload starting with a UTF-8 BOM is read as the service reads it', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = join(tmp.path, 'bom.img')
  makeDirtyDisk(disk, 16 * MiB)
  const file = join(tmp.path, 'bom.json')
  writeFileSync(file, `\ufeff${payload(server.url())}`)
  const run = await cli(['install', '--payload', file, '--disk', disk])
  t.equal(run.code, EXIT_OK, run.stdout)
  t.match(run.stdout, /^Image installed on /)
})

t.test('--disk "": a usage error (exit 2)', async (t) => {
  const run = await cli(['install', '--payload', '-', '--disk', ''], '{}')
  t.equal(run.code, EXIT_USAGE)
  t.match(run.stderr, /^Bad --disk: expected a path/)
  t.equal(run.stdout, '')
})

t.test('install killed (SIGKILL) while writing over an old GPT: the next install on that disk zeroes its first and last MiB and says so', async (t) => {
  const big = makeGptImage(12 * MiB)
  const images = await startScriptedServer((req, res) => {
    if (req.url === '/gone.raw') res.writeHead(404).end()
    else serveFile(req, res, big, { stallAfterBytes: 7 * MiB })
  })
  t.teardown(images.close)
  const DISK_BYTES = 32 * MiB
  const disk = join(tmp.path, 'killed-cli.img')
  makeDirtyDisk(disk, DISK_BYTES)
  execFileSync('sgdisk', ['-o', '-n', '1:2048:+4M', '-c', '1:old-os', disk], { stdio: 'ignore' })
  const oldHead = readRange(disk, 0, MiB)
  const stateDir = join(tmp.path, 'cli-state')
  const file = join(tmp.path, 'killed.json')
  writeFileSync(file, JSON.stringify({ templateName: 'byoi_64', userMetadata: [{ key: 'imageURL', value: images.url() }, { key: 'imageType', value: 'raw' }] }))
  const main = fileURLToPath(new URL('../../agent/main.ts', import.meta.url))
  const argv = [...process.execArgv, main, 'install', '--payload', file, '--disk', disk, '--stream', '--state-dir', stateDir,
    // One connection: its stalled body still brings 7 MiB to the disk (a part is written only once whole).
    '--connections', '1']
  const child = spawn(process.execPath, argv, { stdio: 'ignore' })
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  // The child compiles the agent through the test's TypeScript loader first: slow on a loaded machine.
  await waitFor('image bytes on the disk past the head', () => readRange(disk, MiB, 2 * MiB).equals(big.subarray(MiB, 3 * MiB)), 120_000)
  child.kill('SIGKILL')
  t.equal(await exited, 'SIGKILL')
  t.ok(readRange(disk, 0, MiB).equals(oldHead), 'killed: the old partition table heads a part-written disk')

  // The next install fails before writing (404), yet the interrupted disk no longer boots.
  const next = await cli(['install', '--payload', '-', '--disk', disk, '--state-dir', stateDir], payload(images.url('/gone.raw')))
  t.equal(next.code, EXIT_INSTALL_FAILED)
  t.match(next.stderr, `A previous install on ${disk} did not finish: Install interrupted: the agent stopped during the install, the disk was left unbootable.`)
  t.ok(readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)), 'the first MiB is zero')
  t.ok(readRange(disk, DISK_BYTES - MiB, MiB).equals(Buffer.alloc(MiB)), 'the last MiB is zero')
  // Settled once: a third install does not say it again.
  const third = await cli(['install', '--payload', '-', '--disk', disk, '--state-dir', stateDir], payload(images.url('/gone.raw')))
  t.notMatch(third.stderr, /A previous install/)
})

t.test('install killed while downloading into memory: the next install says the disk was not modified, and it is not', async (t) => {
  const big = makeGptImage(12 * MiB)
  const images = await startScriptedServer((req, res) => {
    if (req.url === '/gone.raw') res.writeHead(404).end()
    else serveFile(req, res, big, { stallAfterBytes: 7 * MiB })
  })
  t.teardown(images.close)
  const disk = join(tmp.path, 'killed-memory.img')
  makeDirtyDisk(disk, 32 * MiB)
  const before = readRange(disk, 0, 32 * MiB)
  const stateDir = join(tmp.path, 'cli-memory-state')
  const file = join(tmp.path, 'killed-memory.json')
  writeFileSync(file, JSON.stringify({ templateName: 'byoi_64', userMetadata: [{ key: 'imageURL', value: images.url() }, { key: 'imageType', value: 'raw' }] }))
  const main = fileURLToPath(new URL('../../agent/main.ts', import.meta.url))
  const child = spawn(process.execPath, [...process.execArgv, main, 'install', '--payload', file, '--disk', disk, '--state-dir', stateDir], { stdio: 'ignore' })
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  await waitFor('the download under way, saved', () => {
    try {
      const name = readdirSync(stateDir).find((f) => f.endsWith('.json')) ?? 'none'
      const state = JSON.parse(readFileSync(join(stateDir, name), 'utf8')) as { status: { steps: Array<{ status: string }> } }
      return state.status.steps[1]?.status === 'doing'
    } catch {
      return false
    }
  }, 120_000)
  child.kill('SIGKILL')
  t.equal(await exited, 'SIGKILL')
  const next = await cli(['install', '--payload', '-', '--disk', disk, '--state-dir', stateDir], payload(images.url('/gone.raw')))
  t.equal(next.code, EXIT_INSTALL_FAILED)
  t.match(next.stderr, `A previous install on ${disk} did not finish: Install interrupted: the agent stopped during the install, the disk was not modified.`)
  t.ok(readRange(disk, 0, 32 * MiB).equals(before), 'the disk is exactly as it was')
})
