import { PassThrough, Readable } from 'node:stream'
import type { Service } from '../../agent/api/start-service.js'
import { runCli, type CliIo } from '../../agent/cli.js'

type CliOutput = { code: number; stdout: string; stderr: string }
/** What a test may give runCli beside the streams: the signal, fake block devices, the environment. */
type IoExtras = Partial<Pick<CliIo, 'signal' | 'blockDevices' | 'env' | 'onServing'>>

/** runCli with captured standard output and error, and `stdin` as its standard input. */
export async function cli (args: string[], stdin = ''): Promise<CliOutput> {
  return await cliWithIo(args, {}, stdin)
}

/** cli(), its environment (capture's AWS_* credentials) `env` instead of process.env. */
export async function cliWithEnv (args: string[], env: Record<string, string> | undefined, stdin = ''): Promise<CliOutput> {
  return await cliWithIo(args, env === undefined ? {} : { env }, stdin)
}

/** cli() with more of CliIo: the signal that stops it, fake block devices, the environment. */
export async function cliWithIo (args: string[], extras: IoExtras, stdin = ''): Promise<CliOutput> {
  const run = startCli(args, extras, stdin)
  const code = await run.code
  return { code, stdout: run.stdout(), stderr: run.stderr() }
}

/** A CLI run under way: its exit code to come and its output so far. */
export interface CliRun { code: Promise<number>; stdout: () => string; stderr: () => string }

export function startCli (args: string[], extras: IoExtras, stdin = ''): CliRun {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (c: Buffer) => { out += c.toString() })
  stderr.on('data', (c: Buffer) => { err += c.toString() })
  const code = runCli(args, { stdout, stderr, stdin: Readable.from([stdin]), ...extras })
  return { code, stdout: () => out, stderr: () => err }
}

/** `serve` under way: its service once it listens, and stop() (the signal SIGTERM would give). */
export interface ServeRun extends CliRun { service: Promise<Service>; stop: () => void }

export function serveCli (args: string[], extras: Omit<IoExtras, 'signal' | 'onServing'> = {}): ServeRun {
  const controller = new AbortController()
  let serving: (service: Service) => void = () => {}
  const service = new Promise<Service>((resolve) => { serving = resolve })
  const run = startCli(['serve', ...args], { ...extras, signal: controller.signal, onServing: serving })
  return { ...run, service, stop: () => { controller.abort() } }
}
