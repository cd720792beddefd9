/**
 * scripts/s3-server.sh, the S3 server the upload tests talk to: a real radosgw on a throwaway one-node Ceph cluster on
 * 127.0.0.1. Checked with clients that are not ours (scripts/s3-check.py: boto3 and curl): bucket, PUT, ranged GET,
 * multipart of 3 parts, EntityTooSmall, abort, presigned PUT, signature and payload-hash refusals. Then SIGTERM: every
 * daemon it started gone, its temp dir removed.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { startS3Server } from '../helpers/s3-server.js'
import { alive } from '../helpers/process-alive.js'

const CHECK = fileURLToPath(new URL('../../scripts/s3-check.py', import.meta.url))


t.setTimeout(300_000)

t.test('radosgw answers S3 as the upload tests need it, and stops leaving nothing behind', async (t) => {
  const s3 = await startS3Server()
  t.teardown(s3.stop)
  t.match(s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.ok(s3.accessKey.length === 20 && s3.secretKey.length === 40 && s3.bucket !== '', 'keys and a bucket')
  t.equal(s3.pids.length, 3, 'ceph-mon, ceph-osd, radosgw')
  t.ok(s3.pids.every(alive) && existsSync(s3.dir), 'running, in its temp dir')

  let out: string
  try {
    out = (await promisify(execFile)('python3', [CHECK], { env: { ...process.env, ...s3.env } })).stdout
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? err)
  }
  t.match(out, /^10 passed, 0 failed$/m, 's3-check.py (boto3, curl): every step passed')

  await s3.stop()
  t.same(s3.pids.filter(alive), [], 'every daemon stopped')
  t.notOk(existsSync(s3.dir), 'temp dir removed')
})
