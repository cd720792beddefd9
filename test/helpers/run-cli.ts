import { PassThrough, Readable } from 'node:stream'
import { runCli } from '../../agent/cli.js'

/** runCli with captured standard output and error, and `stdin` as its standard input. */
export async function cli (args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return await cliWithEnv(args, undefined, stdin)
}

/** cli(), its environment (capture's AWS_* credentials) `env` instead of process.env. */
export async function cliWithEnv (
  args: string[], env: Record<string, string> | undefined, stdin = '',
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const out: Buffer[] = []
  const err: Buffer[] = []
  stdout.on('data', (c: Buffer) => out.push(c))
  stderr.on('data', (c: Buffer) => err.push(c))
  const code = await runCli(args, { stdout, stderr, stdin: Readable.from([stdin]), ...(env === undefined ? {} : { env }) })
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }
}
