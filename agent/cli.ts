import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { pino, type Logger } from 'pino'
import { runInstall, type InstallResult } from './install/run-install.js'
import { parseInstallRequest } from './payload/parse-install-request.js'
import { errors, isInstallError, type InstallError } from './report/install-error.js'
import type { InstallEvent } from './report/progress.js'
import { formatProgress, parseByteSize } from './report/progress-text.js'

export const EXIT_OK = 0
export const EXIT_INSTALL_FAILED = 1
export const EXIT_USAGE = 2

const USAGE = `Usage:
  byoi-agent install --payload FILE --disk PATH [--json] [--stream] [--memory-limit BYTES]
                     [--config-drive iso9660|fat] [--log-level LEVEL]

  --payload FILE        the install/start (or reinstall) JSON body; - reads standard input
  --disk PATH           the target: a block device or a regular file (virtual disk)
  --json                print the result as one JSON object { status, code, message, bytes, digest }
  --stream              raw images: write to the disk while downloading (constant memory)
  --memory-limit BYTES  memory budget for the image (default: total RAM - 3 GiB); e.g. 4GiB
  --config-drive FS     force the ConfigDrive filesystem (default: iso9660 on 512-byte disks, fat on 4Kn)
  --log-level LEVEL     pino level for the JSON log on standard error (default: warn)
`

export interface CliIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }
  stdin: NodeJS.ReadableStream
  signal?: AbortSignal
}

interface Outcome {
  status: 'done' | 'error'
  code: string
  message: string
  bytes: number | null
  digest: { type: string; hex: string } | null
}

function outcomeOf (result: InstallResult | InstallError): Outcome {
  if ('mode' in result) return { status: 'done', code: result.code, message: result.message, bytes: result.bytes, digest: result.digest ?? null }
  return { status: 'error', code: result.code, message: result.message, bytes: null, digest: null }
}

async function readAll (stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
  return Buffer.concat(chunks).toString('utf8')
}

/** Draws install events on standard error: a live bar on a terminal, plain lines otherwise. */
function progressView (stderr: CliIo['stderr']): { onEvent: (event: InstallEvent) => void; close: () => void } {
  const live = stderr.isTTY === true
  let started = 0
  let lastPlainPercent = -1
  let lastPlainAt = 0
  let drawn = false
  const clear = (): void => { if (drawn) { stderr.write('\r\x1b[K'); drawn = false } }
  return {
    onEvent: (event) => {
      if (event.type === 'step') {
        if (event.status === 'doing') {
          started = Date.now()
          lastPlainPercent = -1
        }
        clear()
        stderr.write(`${event.step}: ${event.status}\n`)
      } else if (event.type === 'note') {
        clear()
        stderr.write(`${event.message}\n`)
      } else {
        const seconds = (Date.now() - started) / 1000
        const line = { step: event.step, bytes: event.bytes, totalBytes: event.totalBytes, bytesPerSecond: seconds > 0.5 ? event.bytes / seconds : 0 }
        if (live) {
          stderr.write(`\r\x1b[K${formatProgress(line, Math.max(10, Math.min(40, (stderr.columns ?? 80) - 60)))}`)
          drawn = true
          return
        }
        // Plain lines: every 10 %, or every 10 s when the size is unknown.
        const percent = event.totalBytes !== undefined && event.totalBytes > 0 ? Math.floor((event.bytes / event.totalBytes) * 10) * 10 : undefined
        const now = Date.now()
        if (percent !== undefined ? percent > lastPlainPercent : now - lastPlainAt >= 10_000) {
          lastPlainPercent = percent ?? lastPlainPercent
          lastPlainAt = now
          stderr.write(`${formatProgress(line)}\n`)
        }
      }
    },
    close: clear,
  }
}

/** Runs the CLI; returns the exit code. The only caller of this is main.ts (and the tests). */
export async function runCli (argv: string[], io: CliIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        payload: { type: 'string' },
        disk: { type: 'string' },
        json: { type: 'boolean', default: false },
        stream: { type: 'boolean', default: false },
        'memory-limit': { type: 'string' },
        'config-drive': { type: 'string' },
        'log-level': { type: 'string', default: 'warn' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  } catch (err) {
    io.stderr.write(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`)
    return EXIT_USAGE
  }
  const { values, positionals } = parsed
  if (values.help) {
    io.stdout.write(USAGE)
    return EXIT_OK
  }
  const usage = (problem: string): number => {
    io.stderr.write(`${problem}\n\n${USAGE}`)
    return EXIT_USAGE
  }
  if (positionals.length !== 1 || positionals[0] !== 'install') return usage(positionals.length === 0 ? 'Missing command.' : `Unknown command: ${positionals.join(' ')}`)
  if (values.payload === undefined) return usage('Missing --payload FILE.')
  if (values.disk === undefined) return usage('Missing --disk PATH.')
  let memoryLimitBytes: number | undefined
  if (values['memory-limit'] !== undefined) {
    memoryLimitBytes = parseByteSize(values['memory-limit'])
    if (memoryLimitBytes === undefined) return usage(`Bad --memory-limit ${values['memory-limit']}: expected a number of bytes, e.g. 4294967296 or 4GiB.`)
  }
  const configDriveFs = values['config-drive']
  if (configDriveFs !== undefined && configDriveFs !== 'iso9660' && configDriveFs !== 'fat') return usage(`Bad --config-drive ${configDriveFs}: expected iso9660 or fat.`)
  const level = values['log-level']
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level)) return usage(`Bad --log-level ${level}.`)

  let text: string
  try {
    text = values.payload === '-' ? await readAll(io.stdin) : await readFile(values.payload, 'utf8')
  } catch (err) {
    return usage(`Cannot read the payload ${values.payload}: ${err instanceof Error ? err.message : String(err)}`)
  }

  const logger: Logger = pino({ level, base: { name: 'byoi-agent' } }, io.stderr)
  const view = progressView(io.stderr)
  let outcome: Outcome
  try {
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      throw errors.payloadBadField('payload', 'a JSON document')
    }
    const request = parseInstallRequest(body)
    const result = await runInstall({
      request,
      diskPath: values.disk,
      memoryLimitBytes,
      stream: values.stream,
      configDrive: configDriveFs === undefined ? undefined : { force: configDriveFs },
      signal: io.signal,
      logger,
      onEvent: view.onEvent,
    })
    outcome = outcomeOf(result)
  } catch (err) {
    const failure = isInstallError(err) ? err : errors.internalError(err)
    if (!isInstallError(err)) logger.error({ err }, 'unexpected error')
    outcome = outcomeOf(failure)
  } finally {
    view.close()
  }
  io.stdout.write(values.json ? `${JSON.stringify(outcome)}\n` : `${outcome.message}\n`)
  return outcome.status === 'done' ? EXIT_OK : EXIT_INSTALL_FAILED
}
