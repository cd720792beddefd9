import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import type { InstallEvent } from '../../agent/report/progress.js'
import { EXIT_OK, EXIT_USAGE } from '../../agent/cli.js'
import { runCapture, type CaptureRequest, type S3CaptureTarget } from '../../agent/capture/run-capture.js'
import { parseInstallRequest } from '../../agent/payload/parse-install-request.js'
import { parsePayloadJson } from '../../agent/payload/payload-json.js'
import { makeCaptureDisk, MiB } from '../helpers/capture-disk.js'
import { tempDir } from '../helpers/disk-files.js'
import { qemuImg } from '../helpers/qcow2-fixtures.js'
import { cliWithEnv } from '../helpers/run-cli.js'
import { botoBucket } from '../helpers/s3-boto.js'
import { startS3Server } from '../helpers/s3-server.js'
import { captureLog } from '../helpers/scripted-server.js'
import { expectInstallError, type TapTest } from '../helpers/tap.js'

/**
 * A capture uploaded to a real S3 (radosgw, scripts/s3-server.sh: one server for the whole file,
 * its smallest part lowered to 1 MiB so a small disk makes several parts), with the multipart API.
 * Read back with boto3 (not our code): the object is the bytes hashed, its digest the result's.
 * A proxy written here, in front of radosgw, drops a part's connection once (retried), or damages
 * a part (radosgw refuses it: the upload aborted). A refusal and a cancel leave no multipart upload
 * behind; the credentials and signatures are in no log line, message or note.
 */

t.setTimeout(300_000)
const dir = tempDir()
t.teardown(dir.remove)
const made = makeCaptureDisk(dir.path)
const s3 = await startS3Server({ env: { S3_MIN_PART_BYTES: String(MiB) } })
t.teardown(s3.stop)
const boto = botoBucket(s3)

function target (key: string, more: Partial<S3CaptureTarget> = {}): S3CaptureTarget {
  return { endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, key, accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey, ...more }
}

function capture (s3Target: S3CaptureTarget, more: Partial<CaptureRequest> = {}): Promise<Awaited<ReturnType<typeof runCapture>>> {
  return runCapture({ diskPath: made.path, s3: s3Target, headers: [], checksumType: 'sha512', s3PartBytes: MiB, retryBaseDelayMs: 5, ...more })
}

/** No secret in `text`: neither key, nor a session token, nor any signature. */
function assertNoSecret (t: TapTest, text: string, what: string, extra: string[] = []): void {
  for (const secret of [s3.secretKey, s3.accessKey, ...extra]) t.notOk(text.includes(secret), `${what}: no credential`)
  t.notMatch(text, /Signature=|AWS4-HMAC-SHA256|authorization|x-amz-security-token/i, `${what}: no signature, no Authorization header`)
}

async function uploadsLeft (): Promise<number> {
  return (await boto.uploads()).length
}

type Fault = 'drop' | 'damage'

/**
 * An HTTP proxy in front of radosgw (the Host header kept: the signatures stay valid): forwards
 * every request, but the first UploadPart of `partNumber` gets `fault`: its connection dropped
 * after 100 KiB of its body, or one byte of its body changed (radosgw then sees a payload that
 * does not match its signed SHA-256).
 */
async function faultProxy (partNumber: number, fault: Fault): Promise<{ endpoint: string; faults: number; close: () => void }> {
  const upstream = new URL(s3.endpoint)
  const state = { faults: 0 }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const isPart = req.method === 'PUT' && new URL(req.url ?? '/', 'http://x').searchParams.get('partNumber') === String(partNumber)
    const inject = isPart && state.faults === 0
    if (inject) state.faults++
    const forward = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    forward.on('error', () => { res.destroy() })
    let seen = 0
    const tamper = new Transform({
      transform (chunk: Buffer, _encoding, done) {
        if (inject && fault === 'drop' && seen + chunk.length > 100 * 1024) {
          req.socket.destroy()
          forward.destroy()
          done()
          return
        }
        if (inject && fault === 'damage' && seen === 0) chunk[0] = (chunk[0] ?? 0) ^ 0xff
        seen += chunk.length
        done(null, chunk)
      },
    })
    pipeline(req, tamper, forward).catch(() => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get faults () { return state.faults },
    close: () => { server.closeAllConnections(); server.close() },
  }
}

t.test('qcow2 in parts of 1 MiB: boto3 reads back the bytes hashed; the payload names the object, without credentials', async (t) => {
  const log = captureLog()
  const key = 'captures/server a.qcow2'
  const result = await capture(target(key), { logger: log.logger, s3PartsInFlight: 2 })
  const file = join(dir.path, 'back.qcow2')
  await boto.get(key, file)
  const stored = readFileSync(file)
  t.equal(result.bytes, stored.length, 'the whole file')
  t.equal(result.digest.hex, createHash('sha512').update(stored).digest('hex'), 'the digest is of the object as stored')
  const parts = Math.ceil(stored.length / MiB)
  t.ok(parts >= 3, `${parts} parts`)
  t.match(result.notes, [String], 'notes')
  t.ok(result.notes.includes(`S3 multipart: ${parts} parts`), 'the parts in the notes')
  t.match((await boto.head(key)).ETag, new RegExp(`^"[0-9a-f]{32}-${parts}"$`), 'a multipart object of that many parts')
  qemuImg(['check', '-q', '-f', 'qcow2', file])
  qemuImg(['compare', '-q', '-f', 'raw', '-F', 'qcow2', made.reference, file])
  t.pass('qemu-img check clean, compare: the disk less its free blocks')

  const url = `${s3.endpoint}/${s3.bucket}/captures/server%20a.qcow2`
  t.match(result.message, `to \`${url}\``)
  for (const payload of [result.payloads.installStart, result.payloads.reinstall]) {
    t.match(parseInstallRequest(parsePayloadJson(JSON.stringify(payload), 'payload')), { imageUrl: url, imageType: 'qcow2' })
  }
  t.ok(result.notes.some((n) => /presigned GET URL/.test(n)), 'a note: install from a presigned GET URL')
  t.equal(await uploadsLeft(), 0, 'no multipart upload left')
  assertNoSecret(t, log.text(), 'log')
  assertNoSecret(t, JSON.stringify(result), 'result')
})

t.test('raw.zst in parts, 4 in flight: zstd -d of the object gives the disk less its free blocks', async (t) => {
  const log = captureLog()
  const result = await capture(target('captures/a.raw.zst'), { format: 'raw', compress: 'zstd', logger: log.logger, s3PartsInFlight: 4 })
  const file = join(dir.path, 'back.raw.zst')
  await boto.get('captures/a.raw.zst', file)
  const stored = readFileSync(file)
  t.equal(result.digest.hex, createHash('sha512').update(stored).digest('hex'), 'the digest is of the object as stored')
  t.ok(stored.length > 3 * MiB, `${Math.ceil(stored.length / MiB)} parts`)
  t.ok(execFileSync('zstd', ['-dc', file], { maxBuffer: 512 * MiB }).equals(readFileSync(made.reference)), 'zstd -d: the reference disk')
  assertNoSecret(t, log.text(), 'log')
})

t.test('a wrong secret, a bucket that is not there: CAPTURE_UPLOAD_REFUSED (SignatureDoesNotMatch, NoSuchBucket) at once, nothing left', async (t) => {
  const log = captureLog()
  const wrong = 'x'.repeat(40)
  const message = await expectInstallError(t, capture(target('refused.qcow2', { secretAccessKey: wrong }), { logger: log.logger }), 'CAPTURE_UPLOAD_REFUSED')
  t.equal(message, `Could not upload image to: \`${s3.endpoint}/${s3.bucket}/refused.qcow2\`, the server answered HTTP 403 (SignatureDoesNotMatch).`)
  t.equal(log.lines().filter((l) => l.msg === 'upload attempt failed; retrying').length, 0, 'not retried')
  t.equal(await uploadsLeft(), 0, 'no multipart upload left')
  t.ok((await boto.head('refused.qcow2')).missing, 'no object')
  assertNoSecret(t, log.text() + message, 'log and message', [wrong])

  const noBucket = await expectInstallError(t, capture({ ...target('a.qcow2'), bucket: 'no-such-bucket' }), 'CAPTURE_UPLOAD_REFUSED')
  t.match(noBucket, /the server answered HTTP 404 \(NoSuchBucket\)\.$/)
})

t.test('a part damaged on the way: radosgw refuses it (its SHA-256 is signed), the upload aborted, nothing left', async (t) => {
  const proxy = await faultProxy(2, 'damage')
  t.teardown(proxy.close)
  const log = captureLog()
  const message = await expectInstallError(t, capture(target('damaged.qcow2', { endpoint: proxy.endpoint }), { logger: log.logger }), 'CAPTURE_UPLOAD_REFUSED')
  t.match(message, /HTTP 400 \(XAmzContentSHA256Mismatch\)/)
  t.equal(proxy.faults, 1)
  t.ok(log.lines().some((l) => l.msg === 'multipart upload aborted'), 'aborted')
  t.equal(await uploadsLeft(), 0, 'no multipart upload left')
  t.ok((await boto.head('damaged.qcow2')).missing, 'no object')
  assertNoSecret(t, log.text(), 'log')
})

t.test('a part\'s connection dropped once: that part sent again from memory, the object whole', async (t) => {
  const proxy = await faultProxy(2, 'drop')
  t.teardown(proxy.close)
  const log = captureLog()
  const result = await capture(target('retried.qcow2', { endpoint: proxy.endpoint }), { logger: log.logger })
  t.equal(proxy.faults, 1)
  t.match(log.lines().filter((l) => l.msg === 'upload attempt failed; retrying'), [{ what: 'UploadPart 2', attempt: 1 }], 'part 2 retried, once')
  t.ok(result.notes.some((n) => /requests sent again: 1$/.test(n)), 'said in the notes')
  const file = join(dir.path, 'retried.qcow2')
  await boto.get('retried.qcow2', file)
  t.equal(result.digest.hex, createHash('sha512').update(readFileSync(file)).digest('hex'), 'the digest is of the object as stored')
  qemuImg(['compare', '-q', '-f', 'raw', '-F', 'qcow2', made.reference, file])
  t.pass('qemu-img compare: the disk less its free blocks')
  assertNoSecret(t, log.text(), 'log')
})

t.test('cancelled mid-upload (AbortSignal): the upload aborted, nothing left', async (t) => {
  const controller = new AbortController()
  const log = captureLog()
  const onEvent = (event: InstallEvent): void => {
    if (event.type === 'progress' && event.step === 'upload' && event.bytes > 3 * MiB) controller.abort(new Error('cancelled by the test'))
  }
  const err = await capture(target('cancelled.raw'), { format: 'raw', signal: controller.signal, onEvent, logger: log.logger }).catch((e: unknown) => e)
  t.match(err, { code: 'CAPTURE_CANCELLED' }, 'said as a cancel')
  t.ok(log.lines().some((l) => l.msg === 'multipart upload aborted'), 'aborted')
  t.equal(await uploadsLeft(), 0, 'no multipart upload left')
  t.ok((await boto.head('cancelled.raw')).missing, 'no object')
})

t.test('byoi-agent capture --upload s3://…: credentials from the environment, never in the output even at debug', async (t) => {
  const token = 'session-token-that-must-not-show'
  const env = { AWS_ACCESS_KEY_ID: s3.accessKey, AWS_SECRET_ACCESS_KEY: s3.secretKey }
  const args = ['capture', '--disk', made.path, '--upload', `s3://${s3.bucket}/cli/a.qcow2`, '--s3-endpoint', s3.endpoint, '--json', '--log-level', 'debug']
  const run = await cliWithEnv(args, env)
  t.equal(run.code, EXIT_OK, run.stdout)
  const result = JSON.parse(run.stdout) as { status: string; digest: { hex: string }; bytes: number }
  const file = join(dir.path, 'cli.qcow2')
  await boto.get('cli/a.qcow2', file)
  t.match(result, { status: 'done', bytes: readFileSync(file).length, digest: { hex: createHash('sha512').update(readFileSync(file)).digest('hex') } })
  assertNoSecret(t, run.stderr, 'stderr')
  assertNoSecret(t, run.stdout, 'stdout')

  // A session token (sent as x-amz-security-token; radosgw without STS ignores it): shown nowhere.
  const withToken = await cliWithEnv(args, { ...env, AWS_SESSION_TOKEN: token })
  t.equal(withToken.code, EXIT_OK)
  assertNoSecret(t, withToken.stdout + withToken.stderr, 'run with a session token', [token])
  const noKeys = await cliWithEnv(args, {})
  t.equal(noKeys.code, EXIT_USAGE)
  t.match(noKeys.stderr, /AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/, 'no credentials: a usage error')
  const usage = async (more: string[], upload = `s3://${s3.bucket}/k`): Promise<string> => {
    const run = await cliWithEnv(['capture', '--disk', made.path, '--upload', upload, ...more], env)
    t.equal(run.code, EXIT_USAGE)
    return run.stderr
  }
  t.match(await usage([]), /Missing --s3-endpoint/)
  t.match(await usage(['--s3-endpoint', s3.endpoint], `s3://${s3.bucket}`), /expected s3:\/\/BUCKET\/KEY/)
  t.match(await usage(['--s3-endpoint', `${s3.endpoint}/prefix`]), /Bad --s3-endpoint/)
  t.match(await usage(['--s3-endpoint', s3.endpoint, '--header', 'X-A: b']), /--header goes with an http\(s\) --upload/)
  t.match(await usage(['--s3-endpoint', s3.endpoint], 'http://127.0.0.1:1/a.qcow2'), /--s3-endpoint and --s3-region go with --upload s3:/)
})

t.test('POST /capture/start with s3: the object whole in the bucket, the keys in no log, status, event or state file', async (t) => {
  const { startService } = await import('../../agent/api/start-service.js')
  const { AUTH, captureServiceLog, readEvents, TOKEN, waitFor } = await import('../unit/api/api-test-helpers.js')
  const stateDir = join(dir.path, 'service-state')
  const log = captureServiceLog()
  const service = await startService({
    host: '127.0.0.1', port: 0, token: TOKEN, disk: { path: made.path, auto: false, sizeBytes: null, model: null }, stateDir, logger: log.logger,
  })
  t.teardown(service.close)
  const events: unknown[] = []
  const streamed = readEvents(service.url, { onEvent: (e) => events.push(e) })
  await waitFor('the first event', () => events.length > 0)
  const body = {
    s3: { endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, key: 'service/a.qcow2', accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
  }
  const headers = { ...AUTH, 'content-type': 'application/json' }
  const start = await fetch(`${service.url}/capture/start`, { method: 'POST', headers, body: JSON.stringify(body) })
  t.equal(start.status, 202)
  const stream = await streamed
  const status = await (await fetch(`${service.url}/install/status`, { headers: AUTH })).text()
  const parsed = JSON.parse(status) as { state: string; result: { code: string }; capture: { bytes: number; digest: { hex: string } } }
  t.match(parsed, { state: 'done', kind: 'capture', result: { code: 'CAPTURED' } })
  const file = join(dir.path, 'service-a.qcow2')
  await boto.get('service/a.qcow2', file)
  const stored = readFileSync(file)
  t.equal(parsed.capture.bytes, stored.length)
  t.equal(parsed.capture.digest.hex, createHash('sha512').update(stored).digest('hex'), 'the digest is of the object as stored')
  await service.runner.idle()
  const state = readFileSync(join(stateDir, 'state.json'), 'utf8')
  for (const [what, text] of [['log', log.text()], ['status', status], ['events', stream.text], ['state file', state]] as const) {
    assertNoSecret(t, text, what)
  }
})
