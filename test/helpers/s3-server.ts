import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const SCRIPT = fileURLToPath(new URL('../../scripts/s3-server.sh', import.meta.url))

export interface S3Server {
  /** http://127.0.0.1:PORT, path-style. */
  endpoint: string
  region: string
  accessKey: string
  secretKey: string
  /** Exists, empty, owned by accessKey's user. */
  bucket: string
  /** The daemons' pids and the temp dir, as the script logs them on stderr (for checks that it cleans up). */
  pids: number[]
  dir: string
  /** The KEY=value lines as printed (S3_ENDPOINT, S3_ACCESS_KEY…), to pass to other processes' environments. */
  env: Record<string, string>
  /** SIGTERM to the script, which stops its daemons by pid and removes its temp dir; resolves when it has exited. */
  stop: () => Promise<void>
}

/**
 * Starts scripts/s3-server.sh (a real radosgw on a throwaway one-node Ceph cluster, 127.0.0.1 only) and resolves once it
 * answers S3, in ~8 s (~20 s before its Paxos settings; more on a loaded machine). Callers stop it (t.teardown(server.stop)).
 */
export async function startS3Server (options: { timeoutMs?: number, env?: Record<string, string> } = {}): Promise<S3Server> {
  const child: ChildProcess = spawn('bash', [SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } })
  let stdout = ''
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => { stderr += c.toString() })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  }
  try {
    const env = await new Promise<Record<string, string>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3-server not ready in time; stderr: ${stderr}`)), options.timeoutMs ?? 240_000)
      child.stdout?.on('data', (c: Buffer) => {
        stdout += c.toString()
        if (!/^S3_READY=1$/m.test(stdout)) return
        clearTimeout(timer)
        resolve(Object.fromEntries(stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])))
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`s3-server exited (${code}) before it was ready; stderr: ${stderr}`))
      })
    })
    return {
      endpoint: env.S3_ENDPOINT ?? '',
      region: env.S3_REGION ?? '',
      accessKey: env.S3_ACCESS_KEY ?? '',
      secretKey: env.S3_SECRET_KEY ?? '',
      bucket: env.S3_BUCKET ?? '',
      env,
      pids: (/; pids ([\d ]+)$/m.exec(stderr)?.[1] ?? '').split(' ').filter((p) => p !== '').map(Number),
      dir: /^s3-server: temp dir (\S+),/m.exec(stderr)?.[1] ?? '',
      stop
    }
  } catch (err) {
    await stop()
    throw err
  }
}
