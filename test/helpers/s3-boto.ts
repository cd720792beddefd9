import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { S3Server } from './s3-server.js'

const SCRIPT = fileURLToPath(new URL('./s3-boto.py', import.meta.url))
/** Debian's python3 with python3-boto3 (the pyenv python3 on PATH may carry another boto3). */
export const DEBIAN_PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

/** boto3, not our code, reading the bucket: the referee of the S3 upload tests. */
export function botoBucket (s3: S3Server): {
  get: (key: string, file: string) => Promise<void>
  head: (key: string) => Promise<{ ContentLength?: number; ETag?: string; missing?: boolean }>
  uploads: () => Promise<Array<{ Key: string; UploadId: string }>>
} {
  const run = async (...args: string[]): Promise<unknown> => {
    const { stdout } = await promisify(execFile)(DEBIAN_PYTHON, [SCRIPT, s3.bucket, ...args], { env: { ...process.env, ...s3.env } })
    return JSON.parse(stdout)
  }
  return {
    get: async (key, file) => { await run('get', key, file) },
    head: async (key) => await run('head', key) as { ContentLength?: number; ETag?: string; missing?: boolean },
    uploads: async () => await run('uploads') as Array<{ Key: string; UploadId: string }>,
  }
}
