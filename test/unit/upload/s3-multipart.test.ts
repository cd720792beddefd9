import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import t from 'tap'
import { defaultPartBytes, s3ObjectUrl, uploadMultipart, type S3Target } from '../../../agent/upload/s3-multipart.js'
import { captureLog, startScriptedServer, testFile } from '../../helpers/scripted-server.js'
import { expectInstallError } from '../../helpers/tap.js'

/**
 * uploadMultipart's answers to what a real S3 says only now and then (radosgw is its referee in
 * test/integration/capture-s3): a 503 on a part, a CompleteMultipartUpload answered 200 with an
 * <Error> body, radosgw 16.2's empty completion ETag, a completion whose answer was lost. A fake S3
 * scripted by operation, recording each request (method, operation, part, body).
 */

const MiB = 1024 * 1024
const FILE = testFile(5 * MiB + 12_345)

interface Seen { method: string; op: string; part?: number; body: Buffer }

type Reply = (req: IncomingMessage, res: ServerResponse, seen: Seen) => boolean

/** A fake S3: each request to the first `replies` that answers it (returns true), else the normal answer. */
async function fakeS3 (replies: Reply[] = []): Promise<{ seen: Seen[]; stored: () => Buffer; target: S3Target; close: () => Promise<void> }> {
  const seen: Seen[] = []
  const parts = new Map<number, Buffer>()
  let completed: Buffer | undefined
  const server = await startScriptedServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x')
      const part = url.searchParams.get('partNumber')
      const byMethod: Record<string, string> = { POST: 'complete', DELETE: 'abort' }
      const op = url.searchParams.has('uploads') ? 'create' : part !== null ? 'part' : byMethod[req.method ?? ''] ?? req.method ?? ''
      const entry: Seen = { method: req.method ?? '', op, body: Buffer.concat(chunks), ...(part === null ? {} : { part: Number(part) }) }
      seen.push(entry)
      if (replies.some((reply) => reply(req, res, entry))) return
      if (op === 'create') res.writeHead(200).end('<InitiateMultipartUploadResult><UploadId>u-1</UploadId></InitiateMultipartUploadResult>')
      else if (op === 'part') {
        parts.set(entry.part ?? 0, entry.body)
        res.writeHead(200, { etag: `"${createHash('md5').update(entry.body).digest('hex')}"` }).end()
      } else if (op === 'complete') {
        completed = Buffer.concat([...parts.entries()].sort(([a], [b]) => a - b).map(([, b]) => b))
        res.writeHead(200).end('<CompleteMultipartUploadResult><ETag></ETag></CompleteMultipartUploadResult>') // radosgw 16.2.15's empty ETag
      } else if (op === 'abort') res.writeHead(204).end()
      else res.writeHead(404).end()
    })
  })
  return {
    seen,
    stored: () => completed ?? Buffer.alloc(0),
    target: { endpoint: server.origin, region: 'us-east-1', bucket: 'b', key: 'k.qcow2', accessKeyId: 'AKIDFAKE', secretAccessKey: 'fake-secret' },
    close: server.close,
  }
}

async function * chunks (file: Buffer, chunkBytes = 300_000): AsyncGenerator<Buffer> {
  for (let i = 0; i < file.length; i += chunkBytes) yield file.subarray(i, i + chunkBytes)
}

const options = { partBytes: MiB, retryBaseDelayMs: 5, partsInFlight: 2 }

t.test('parts of 1 MiB, the last short; radosgw\'s empty completion ETag is success', async (t) => {
  const s3 = await fakeS3()
  t.teardown(s3.close)
  const result = await uploadMultipart({ ...options, target: s3.target, body: chunks(FILE) })
  t.match(result, { bytes: FILE.length, parts: 6, partBytes: MiB, retries: 0 })
  t.ok(s3.stored().equals(FILE), 'the parts make the file')
  t.same(s3.seen.map((s) => s.op), ['create', 'part', 'part', 'part', 'part', 'part', 'part', 'complete'])
  const completion = s3.seen.at(-1)?.body.toString() ?? ''
  t.match(completion, /^<CompleteMultipartUpload xmlns="[^"]+"><Part><PartNumber>1<\/PartNumber><ETag>&quot;[0-9a-f]{32}&quot;<\/ETag><\/Part>/)
  t.equal(completion.match(/<Part>/g)?.length, 6)
})

t.test('a 503 on a part: that part sent again, the same bytes', async (t) => {
  let failed = false
  const s3 = await fakeS3([(_req, res, seen) => {
    if (seen.part !== 3 || failed) return false
    failed = true
    res.writeHead(503).end('<Error><Code>SlowDown</Code></Error>')
    return true
  }])
  t.teardown(s3.close)
  const log = captureLog()
  const result = await uploadMultipart({ ...options, target: s3.target, body: chunks(FILE), logger: log.logger })
  t.equal(result.retries, 1)
  t.ok(s3.stored().equals(FILE))
  const sent = s3.seen.filter((s) => s.part === 3)
  t.equal(sent.length, 2)
  t.ok(sent[0]?.body.equals(sent[1]?.body ?? Buffer.alloc(0)), 'the same bytes twice')
  t.match(log.lines().find((l) => l.msg === 'upload attempt failed; retrying'), { what: 'UploadPart 3', reason: 'UploadPart 3: HTTP 503 (SlowDown)' })
})

t.test('CompleteMultipartUpload answered 200 with an <Error> body, every time: CAPTURE_UPLOAD_FAILED, the upload aborted', async (t) => {
  const s3 = await fakeS3([(_req, res, seen) => {
    if (seen.op !== 'complete') return false
    res.writeHead(200).end('<?xml version="1.0"?>\n\n<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>')
    return true
  }])
  t.teardown(s3.close)
  await expectInstallError(t, uploadMultipart({ ...options, maxAttempts: 2, target: s3.target, body: chunks(FILE) }), 'CAPTURE_UPLOAD_FAILED')
  t.same(s3.seen.filter((s) => s.op === 'complete' || s.op === 'abort').map((s) => s.op), ['complete', 'complete', 'abort'])
})

t.test('a completion whose answer was lost: the next attempt\'s NoSuchUpload, and the object\'s multipart ETag ours: success', async (t) => {
  let etag = ''
  let lost = false
  const s3 = await fakeS3([
    (req, _res, seen) => {
      if (seen.op !== 'complete' || lost) return false
      lost = true
      const md5 = createHash('md5')
      for (let i = 0; i < FILE.length; i += MiB) md5.update(createHash('md5').update(FILE.subarray(i, i + MiB)).digest())
      etag = `"${md5.digest('hex')}-6"`
      req.socket.destroy() // S3 completed it; its answer never came
      return true
    },
    (_req, res, seen) => {
      if (seen.op !== 'complete') return false
      res.writeHead(404).end('<Error><Code>NoSuchUpload</Code></Error>')
      return true
    },
    (_req, res, seen) => {
      if (seen.method !== 'HEAD') return false
      res.writeHead(200, { etag }).end()
      return true
    },
  ])
  t.teardown(s3.close)
  const result = await uploadMultipart({ ...options, target: s3.target, body: chunks(FILE) })
  t.match(result, { parts: 6, retries: 1 })
  t.same(s3.seen.slice(-3).map((s) => s.method), ['POST', 'POST', 'HEAD'])
})

t.test('a 404 NoSuchBucket on create: refused at once, nothing to abort; a part refused (403): the upload aborted', async (t) => {
  const noBucket = await fakeS3([(_req, res, seen) => {
    if (seen.op !== 'create') return false
    res.writeHead(404).end('<Error><Code>NoSuchBucket</Code></Error>')
    return true
  }])
  t.teardown(noBucket.close)
  const message = await expectInstallError(t, uploadMultipart({ ...options, target: noBucket.target, body: chunks(FILE) }), 'CAPTURE_UPLOAD_REFUSED')
  t.equal(message, `Could not upload image to: \`${noBucket.target.endpoint}/b/k.qcow2\`, the server answered HTTP 404 (NoSuchBucket).`)
  t.same(noBucket.seen.map((s) => s.op), ['create'])

  const partRefused = await fakeS3([(_req, res, seen) => {
    if (seen.part !== 2) return false
    res.writeHead(403).end('<Error><Code>AccessDenied</Code><StringToSign>AWS4-HMAC-SHA256…</StringToSign><SignatureProvided>abc</SignatureProvided></Error>')
    return true
  }])
  t.teardown(partRefused.close)
  const log = captureLog()
  const refused = await expectInstallError(t, uploadMultipart({ ...options, target: partRefused.target, body: chunks(FILE), logger: log.logger }),
    'CAPTURE_UPLOAD_REFUSED')
  t.match(refused, /HTTP 403 \(AccessDenied\)\.$/)
  t.equal(partRefused.seen.at(-1)?.op, 'abort', 'aborted last')
  t.notOk(partRefused.seen.some((s) => s.op === 'complete'), 'never completed')
  t.notMatch(log.text(), /StringToSign|SignatureProvided|AWS4-HMAC|fake-secret|AKIDFAKE/, 'the error body, the keys: never logged')
})

t.test('memory: at most partsInFlight + 1 part buffers', async (t) => {
  const s3 = await fakeS3()
  t.teardown(s3.close)
  const log = captureLog()
  await uploadMultipart({ ...options, partsInFlight: 3, target: s3.target, body: chunks(testFile(12 * MiB + 1)), logger: log.logger })
  const allocated = log.lines().find((l) => l.msg === 'parts buffers')?.allocatedBuffers
  t.ok(typeof allocated === 'number' && allocated <= 4, `${String(allocated)} buffers of 1 MiB for 13 parts`)
})

t.test('defaultPartBytes and s3ObjectUrl', async (t) => {
  t.equal(defaultPartBytes(undefined), 8 * MiB)
  t.equal(defaultPartBytes(10 * 1024 * MiB), 8 * MiB)
  t.equal(defaultPartBytes(1024 * 1024 * MiB), 105 * MiB, '1 TiB: 105 MiB parts, under 10 000')
  t.ok(1024 * 1024 * MiB / (105 * MiB) <= 10_000)
  t.equal(defaultPartBytes(10 ** 15), 5 * 1024 * MiB, 'capped at 5 GiB')
  const target: S3Target = { endpoint: 'https://s3.example.invalid', region: 'r', bucket: 'b', key: 'a b/c.qcow2', accessKeyId: 'A', secretAccessKey: 'S' }
  t.equal(s3ObjectUrl(target), 'https://s3.example.invalid/b/a%20b/c.qcow2')
  t.equal(s3ObjectUrl({ ...target, addressing: 'virtual' }), 'https://b.s3.example.invalid/a%20b/c.qcow2')
})

t.test('an endpoint that is not scheme://host: CAPTURE_UPLOAD_FAILED, nothing sent', async (t) => {
  const target: S3Target = { endpoint: 'ftp://127.0.0.1', region: 'r', bucket: 'b', key: 'k', accessKeyId: 'A', secretAccessKey: 'S' }
  for (const endpoint of ['ftp://127.0.0.1', 'http://user:pw@127.0.0.1', 'http://127.0.0.1/prefix', 'nope']) {
    await expectInstallError(t, uploadMultipart({ target: { ...target, endpoint }, body: chunks(FILE) }), 'CAPTURE_UPLOAD_FAILED')
  }
})
