import { createHash, randomUUID } from 'node:crypto'
import { readFile, realpath, stat } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { pino, type Logger } from 'pino'
import { checkToken } from './api/bearer-auth.js'
import type { Service } from './api/start-service.js'
import type { S3CaptureTarget } from './capture/run-capture.js'
import {
  devicePath, findAutoDisk, freeDisks, readBlockDevices, type BlockDeviceSources,
} from './disk/auto-disk.js'
import type { DeployDisk } from './ironic/agent-commands.js'
import { parseHintsText, parseRootDeviceHints, type RootDeviceHint } from './disk/root-device-hints.js'
import { DEFAULT_CONNECTIONS, MAX_CONNECTIONS, MAX_DEADLINE_MS } from './download/index.js'
import type { DownloadTuning } from './install/fetch-image.js'
import { settleInterruptedInstall } from './service/interrupted-install.js'
import { DEFAULT_STATE_DIR, JobStateStore, prepareStateDir, type DiskWriteRecord } from './service/job-state-store.js'
import { interruptedStatus, JobStatusTracker, type DiskView } from './service/job-status.js'
import { runInstall, type InstallResult } from './install/run-install.js'
import { checkFixedDiskGroup, parseInstallRequest } from './payload/parse-install-request.js'
import { parsePayloadJson } from './payload/payload-json.js'
import { errors, isInstallError, type InstallError } from './errors/install-error.js'
import type { InstallEvent } from './report/progress.js'
import { formatProgress, parseByteSize } from './report/progress-text.js'
import { safeUrl } from './report/redact.js'
import { eraseDiskMetadata } from './disk/erase-metadata.js'
import { runCommand } from './disk/run-command.js'
import { parseKernelParams, type IronicKernelParams } from './ironic/kernel-params.js'
import { collectSystemLogs, LogRing } from './ironic/system-logs.js'
import { agentVersion } from './api/openapi-document.js'
import { parseReportUrl } from './service/report-url.js'
import { createServiceLogger, isLogLevel, type LogLevel } from './service/service-logger.js'
import { chooseInstallDisk, type ChosenDisk } from './service/install-disk.js'

export const EXIT_OK = 0
export const EXIT_INSTALL_FAILED = 1
export const EXIT_USAGE = 2

const USAGE = `Usage:
  byoi-agent install --payload FILE --disk PATH|hints:HINTS [--json] [--stream] [--memory-limit BYTES]
                     [--config-drive iso9660|fat] [--state-dir DIR] [--log-level LEVEL]
                     [--low-speed-limit BYTES --low-speed-time SECONDS] [--download-deadline SECONDS]
                     [--connections N]

  --payload FILE        the install/start (or reinstall) JSON body; - reads standard input
  --disk PATH           the target: a block device or a regular file (virtual disk)
  --disk hints:HINTS    the one disk not in use that OpenStack Ironic's root device hints match, e.g.
                        'hints:serial=S64HNE0R123456' or 'hints:size>=400,rotational=false,model=<in> samsung'
                        (NAME=EXPR or NAME OP VALUE, commas between them, \\, for a comma in a value; or
                        Ironic's JSON object); none or several matching is refused (docs/disk-choice.md)
  --json                print the result as one JSON object { status, code, message, bytes, digest, notes }
  --stream              write to the disk while downloading (bounded memory; a qcow2 once its size is announced)
  --memory-limit BYTES  memory budget for the image (default: total RAM - 3 GiB); e.g. 4GiB
  --config-drive FS     force the ConfigDrive filesystem (default: iso9660 on 512-byte disks, fat on 4Kn)
  --log-level LEVEL     pino level for the JSON log on standard error (default: warn; serve: info)
  --low-speed-limit BYTES  a download attempt bringing less than this per second, averaged over
                        --low-speed-time, fails and is retried (default: 10KiB; 0: no limit)
  --low-speed-time SECONDS  the window of --low-speed-limit (default: 60)
  --download-deadline SECONDS  the whole download, retries included, must end within this
                        (default: none)
  --connections N       download over N parallel Range requests, 1 to ${MAX_CONNECTIONS} (default: ${DEFAULT_CONNECTIONS});
                        one connection when the server answers no Range or shows no ETag or Last-Modified
  --state-dir DIR       install: where the install's state is kept per disk (default: /run/byoi-agent/install);
                        an install killed while writing is found there by the next install on that disk,
                        which first zeroes the disk's first and last MiB

  byoi-agent serve --listen HOST:PORT --disk PATH|auto|hints:HINTS --token-file FILE [--report-url URL]
                   [--tls-cert FILE --tls-key FILE] [--state-dir DIR] [--memory-limit BYTES]
                   [--stream] [--config-drive iso9660|fat] [--log-level LEVEL]
                   [--low-speed-limit BYTES --low-speed-time SECONDS] [--download-deadline SECONDS]
                   [--connections N]

  --listen HOST:PORT    address to listen on, e.g. 0.0.0.0:8443 or [::]:8443 (port 0 picks a free port)
  --disk PATH|auto      the target; auto: chosen when each install starts: the first disk not in use of the
                        payload's disk group (storage[0].diskGroupId), else the first whole, non-removable,
                        non-virtual disk not in use
  --disk hints:HINTS    the disk root device hints match (as for install), chosen once at start
  --token-file FILE     the bearer token every route but /health requires (16+ visible ASCII characters)
  --report-url URL      POST each step change and the result there as JSON (retried, never blocking)
  --tls-cert, --tls-key PEM files: serve HTTPS
  --state-dir DIR       where the job's state is kept across restarts (default: /run/byoi-agent)
  SIGTERM or SIGINT stops the service: a running install is cancelled and waited for.

  byoi-agent capture --disk PATH --upload URL [--header 'Name: value']... [--format qcow2|raw]
                     [--compress zstd|zlib|none] [--checksum-type sha256|sha512] [--json] [--log-level LEVEL]
  byoi-agent capture --disk PATH --upload s3://BUCKET/KEY --s3-endpoint URL [--s3-region REGION] ...

  --disk PATH           the source: opened read only; refused while it is mounted, swap or held
  --upload URL          where the image goes, with one HTTP PUT (a WebDAV server, a presigned URL)
  --header 'N: v'       a header sent with the upload (repeatable); its value is never logged
  --upload s3://B/K     to an S3 bucket with the multipart API (any size), signed with AWS_ACCESS_KEY_ID,
                        AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from the environment (never from argv)
  --s3-endpoint URL     the S3 service, e.g. https://s3.eu-west-3.amazonaws.com (path-style addressing)
  --s3-region REGION    the signing region (default: us-east-1)
  --format FORMAT       qcow2 (default): a sparse qcow2 v3, all-zero clusters and the free blocks of
                        ext2/3/4 filesystems left out (deleted data never leaves the server); raw: every
                        byte, those free blocks zeroed
  --compress C          qcow2: zstd or zlib compressed clusters, as qemu-img convert -c makes them (the disk
                        is compressed twice: to lay the file out, then to send it); raw: zstd (one frame,
                        a .raw.zst) or zlib (gzip, a .raw.gz), both installable as imageType raw; none (default)
  --checksum-type T     the digest of the file as uploaded (default: sha512)
  --json                print the result as one JSON object, with the install payloads for the image

  byoi-agent ironic --api-url URL [--listen HOST:PORT] [--callback-url URL] [--disk PATH|auto]
                    [--insecure] [--mac MAC]... [--heartbeat-interval SECONDS] [--lookup-timeout SECONDS]
                    [--power-off exit|system] [--state-dir DIR] [--memory-limit BYTES] [--log-level LEVEL]
  byoi-agent ironic --from-cmdline /proc/cmdline ...

  --api-url URL         the Ironic API (its lookup and heartbeat); the agent is an Ironic deploy ramdisk
                        speaking ironic-python-agent's protocol (docs/ironic.md)
  --listen HOST:PORT    where the agent API the conductor calls listens (default 0.0.0.0:9999)
  --callback-url URL    what Ironic is told to call (default http://ADDRESS:PORT, ADDRESS the source
                        address of the route to the API)
  --disk PATH|auto      the disk when the node has no root device hints (default auto)
  --insecure            do not verify the Ironic API's TLS certificate (ipa-insecure)
  --mac MAC             look the node up by this MAC address (repeatable; default: the machine's interfaces)
  --heartbeat-interval S  seconds between heartbeats (default: from Ironic's heartbeat_timeout)
  --power-off ACTION    what standby.power_off does: exit (stop the agent, default) or system (poweroff -f)
  --from-cmdline FILE   take ipa-api-url, ipa-advertise-host/-port, ipa-listen-host/-port, ipa-insecure,
                        ipa-agent-token and ipa-lookup-timeout from a kernel command line (/proc/cmdline),
                        as Ironic's PXE and virtual-media boot pass them; options given win
`

const OPTIONS = {
  payload: { type: 'string' },
  disk: { type: 'string' },
  json: { type: 'boolean' },
  stream: { type: 'boolean' },
  'memory-limit': { type: 'string' },
  'config-drive': { type: 'string' },
  'log-level': { type: 'string' },
  'low-speed-limit': { type: 'string' },
  'low-speed-time': { type: 'string' },
  'download-deadline': { type: 'string' },
  connections: { type: 'string' },
  listen: { type: 'string' },
  'token-file': { type: 'string' },
  'report-url': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'state-dir': { type: 'string' },
  upload: { type: 'string' },
  header: { type: 'string', multiple: true },
  format: { type: 'string' },
  compress: { type: 'string' },
  'checksum-type': { type: 'string' },
  's3-endpoint': { type: 'string' },
  's3-region': { type: 'string' },
  'api-url': { type: 'string' },
  'callback-url': { type: 'string' },
  insecure: { type: 'boolean' },
  mac: { type: 'string', multiple: true },
  'heartbeat-interval': { type: 'string' },
  'lookup-timeout': { type: 'string' },
  'power-off': { type: 'string' },
  'from-cmdline': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

type OptionName = keyof typeof OPTIONS
type OptionValue<O> = O extends { multiple: true } ? string[] : O extends { type: 'boolean' } ? boolean : string
type CliValues = { [K in OptionName]?: OptionValue<typeof OPTIONS[K]> }

const DOWNLOAD_OPTIONS = ['low-speed-limit', 'low-speed-time', 'download-deadline', 'connections'] as const

const COMMAND_OPTIONS: Record<'install' | 'serve' | 'capture' | 'ironic', readonly string[]> = {
  ironic: [
    'api-url', 'listen', 'callback-url', 'disk', 'insecure', 'mac', 'heartbeat-interval', 'lookup-timeout', 'power-off', 'from-cmdline',
    'state-dir', 'memory-limit', 'config-drive', 'log-level', ...DOWNLOAD_OPTIONS,
  ],
  capture: ['disk', 'upload', 'header', 'format', 'compress', 'checksum-type', 'json', 'log-level', 's3-endpoint', 's3-region'],
  install: ['payload', 'disk', 'json', 'stream', 'memory-limit', 'config-drive', 'log-level', 'state-dir', ...DOWNLOAD_OPTIONS],
  serve: [
    'listen', 'disk', 'token-file', 'report-url', 'tls-cert', 'tls-key', 'state-dir', 'memory-limit', 'stream', 'config-drive', 'log-level',
    ...DOWNLOAD_OPTIONS,
  ],
}

export interface CliIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }
  stdin: NodeJS.ReadableStream
  /** Aborted on SIGINT/SIGTERM: cancels an install, stops the service. */
  signal?: AbortSignal
  /** `serve --disk auto` reads these (default /sys/block, /proc/self/mountinfo, /proc/swaps; tests give fake ones). */
  blockDevices?: BlockDeviceSources
  /** `capture` to S3 reads its credentials here (default: process.env). */
  env?: Record<string, string | undefined>
  /** `serve`: called once it listens (tests learn the URL and may stop it without a signal). */
  onServing?: (service: Service) => void
}

interface Outcome {
  status: 'done' | 'error'
  code: string
  message: string
  bytes: number | null
  digest: { type: string; hex: string } | null
  /** The install's notes, oldest first (a switch to streaming, the ConfigDrive mount check). */
  notes: string[]
}

function outcomeOf (result: InstallResult | InstallError, notes: string[]): Outcome {
  if ('mode' in result) return { status: 'done', code: result.code, message: result.message, bytes: result.bytes, digest: result.digest ?? null, notes }
  return { status: 'error', code: result.code, message: result.message, bytes: null, digest: null, notes }
}

async function readAll (stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
  return Buffer.concat(chunks).toString('utf8')
}

/** Draws steps and their byte progress on standard error: a live bar on a terminal, plain lines otherwise. */
interface ProgressDrawer {
  step: (step: string, status: string) => void
  progress: (step: string, bytes: number, totalBytes: number | undefined) => void
  note: (message: string) => void
  close: () => void
}

function progressDrawer (stderr: CliIo['stderr']): ProgressDrawer {
  const live = stderr.isTTY === true
  let started = Date.now()
  let lastPlainPercent = -1
  let lastPlainAt = 0
  let lastLiveAt = 0
  let drawn = false
  const clear = (): void => { if (drawn) { stderr.write('\r\x1b[K'); drawn = false } }
  return {
    step: (step, status) => {
      if (status === 'doing') {
        started = Date.now()
        lastPlainPercent = -1
      }
      clear()
      stderr.write(`${step}: ${status}\n`)
    },
    note: (message) => {
      clear()
      stderr.write(`${message}\n`)
    },
    progress: (step, bytes, totalBytes) => {
      const seconds = (Date.now() - started) / 1000
      const line = { step, bytes, totalBytes, bytesPerSecond: seconds > 0.5 ? bytes / seconds : 0 }
      const now = Date.now()
      if (live) {
        // At most 10 draws a second: a capture reports every cluster.
        if (now - lastLiveAt < 100 && bytes !== totalBytes) return
        lastLiveAt = now
        stderr.write(`\r\x1b[K${formatProgress(line, Math.max(10, Math.min(40, (stderr.columns ?? 80) - 60)))}`)
        drawn = true
        return
      }
      // Plain lines: every 10 %, or every 10 s when the size is unknown.
      const percent = totalBytes !== undefined && totalBytes > 0 ? Math.floor((bytes / totalBytes) * 10) * 10 : undefined
      if (percent !== undefined ? percent > lastPlainPercent : now - lastPlainAt >= 10_000) {
        lastPlainPercent = percent ?? lastPlainPercent
        lastPlainAt = now
        stderr.write(`${formatProgress(line)}\n`)
      }
    },
    close: clear,
  }
}

/** Install events drawn. */
function progressView (stderr: CliIo['stderr']): { onEvent: (event: InstallEvent) => void; close: () => void } {
  const drawer = progressDrawer(stderr)
  return {
    onEvent: (event) => {
      if (event.type === 'step') drawer.step(event.step, event.status)
      else if (event.type === 'note') drawer.note(event.message)
      else drawer.progress(event.step, event.bytes, event.totalBytes)
    },
    close: drawer.close,
  }
}

/** Runs the CLI; returns the exit code. The only caller of this is main.ts (and the tests). */
export async function runCli (argv: string[], io: CliIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, tokens: true, options: OPTIONS })
  } catch (err) {
    io.stderr.write(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`)
    return EXIT_USAGE
  }
  const { values, positionals } = parsed
  if (values.help === true) {
    io.stdout.write(USAGE)
    return EXIT_OK
  }
  const usage = (problem: string): number => {
    io.stderr.write(`${problem}\n\n${USAGE}`)
    return EXIT_USAGE
  }
  const command = positionals[0]
  if (positionals.length !== 1 || (command !== 'install' && command !== 'serve' && command !== 'capture' && command !== 'ironic')) {
    return usage(positionals.length === 0 ? 'Missing command.' : `Unknown command: ${positionals.join(' ')}`)
  }
  const given = new Set(parsed.tokens.flatMap((token) => token.kind === 'option' ? [token.name] : []))
  const foreign = [...given].find((name) => name !== 'help' && !COMMAND_OPTIONS[command].includes(name))
  if (foreign !== undefined) return usage(`--${foreign} is not an option of ${command}.`)
  // An empty value (`--disk ""`, often an unset shell variable) is bad usage, not a path.
  const empty = (Object.keys(OPTIONS) as OptionName[]).find((name) => values[name] === '')
  if (empty !== undefined) return usage(`Bad --${empty}: expected ${empty === 'disk' ? 'a path' : 'a value'}, got an empty string.`)
  if (command === 'serve') return runServe(values, { io, usage })
  if (command === 'capture') return await runCaptureCommand(values, { io, usage })
  if (command === 'ironic') return await runIronicCommand(values, { io, usage })
  if (values.payload === undefined) return usage('Missing --payload FILE.')
  if (values.disk === undefined) return usage('Missing --disk PATH.')
  const target = diskTarget(values.disk)
  if (typeof target === 'string') return usage(target)
  if ('auto' in target) return usage('--disk auto is for serve: install takes --disk PATH or --disk hints:HINTS.')
  const common = commonOptions(values, 'warn')
  if (typeof common === 'string') return usage(common)
  const { memoryLimitBytes, configDriveFs, level, downloadTuning } = common

  let text: string
  try {
    text = values.payload === '-' ? await readAll(io.stdin) : await readFile(values.payload, 'utf8')
  } catch (err) {
    return usage(`Cannot read the payload ${values.payload}: ${err instanceof Error ? err.message : String(err)}`)
  }

  const logger: Logger = pino({ level, base: { name: 'byoi-agent' } }, io.stderr)
  let chosen: ChosenDisk | undefined
  if ('hints' in target) {
    try {
      chosen = await chooseInstallDisk(target, io.blockDevices)
    } catch (err) {
      const failure = isInstallError(err) ? err : errors.internalError(err)
      logger.error({ err }, failure.message)
      const outcome = outcomeOf(failure, [])
      io.stdout.write(values.json === true ? `${JSON.stringify(outcome)}\n` : `${outcome.message}\n`)
      return EXIT_INSTALL_FAILED
    }
    logger.info({ disk: chosen.disk }, chosen.why)
  }
  const diskPath = chosen?.disk.path ?? values.disk
  const journal = await openInstallJournal({ diskPath, stateDir: values['state-dir'], logger, stderr: io.stderr })
  if (typeof journal === 'string') return usage(journal)
  const view = progressView(io.stderr)
  let outcome: Outcome
  const notes: string[] = []
  const onEvent = (event: InstallEvent): void => {
    if (event.type === 'note') notes.push(event.message)
    journal?.onEvent(event)
    view.onEvent(event)
  }
  if (chosen !== undefined) onEvent({ type: 'note', message: chosen.why })
  try {
    const request = parseInstallRequest(parsePayloadJson(text, 'payload'))
    checkFixedDiskGroup(request, diskPath)
    const result = await runInstall({
      request,
      diskPath,
      memoryLimitBytes,
      stream: values.stream === true,
      configDrive: configDriveFs === undefined ? undefined : { force: configDriveFs },
      downloadTuning,
      signal: io.signal,
      logger,
      onEvent,
      beforeFirstWrite: journal?.beforeFirstWrite,
    })
    outcome = outcomeOf(result, notes)
  } catch (err) {
    const failure = isInstallError(err) ? err : errors.internalError(err)
    if (!isInstallError(err)) logger.error({ err }, 'unexpected error')
    outcome = outcomeOf(failure, notes)
  } finally {
    view.close()
  }
  await journal?.finish({ code: outcome.code as InstallError['code'] | 'INSTALLED', message: outcome.message })
  io.stdout.write(values.json === true ? `${JSON.stringify(outcome)}\n` : `${outcome.message}\n`)
  return outcome.status === 'done' ? EXIT_OK : EXIT_INSTALL_FAILED
}

interface CommandContext {
  io: CliIo
  usage: (problem: string) => number
}

/** `capture`: the disk uploaded as an image; the result (and with --json the install payloads) on standard output. */
async function runCaptureCommand (values: CliValues, { io, usage }: CommandContext): Promise<number> {
  if (values.disk === undefined) return usage('Missing --disk PATH.')
  if (values.upload === undefined) return usage('Missing --upload URL.')
  const format = values.format ?? 'qcow2'
  if (format !== 'qcow2' && format !== 'raw') return usage(`Bad --format ${format}: expected qcow2 or raw.`)
  const compress = values.compress ?? 'none'
  if (compress !== 'zstd' && compress !== 'zlib' && compress !== 'none') return usage(`Bad --compress ${compress}: expected zstd, zlib or none.`)
  const checksumType = values['checksum-type'] ?? 'sha512'
  if (checksumType !== 'sha256' && checksumType !== 'sha512') return usage(`Bad --checksum-type ${checksumType}: expected sha256 or sha512.`)
  const headers: Array<{ name: string; value: string }> = []
  for (const header of values.header ?? []) {
    const colon = header.indexOf(':')
    const name = colon > 0 ? header.slice(0, colon).trim() : ''
    // The value is never repeated back: only the name, or that there was none.
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
      return usage(`Bad --header: expected 'Name: value'${name === '' ? '' : `, got the name ${JSON.stringify(name.slice(0, 40))}`}.`)
    }
    headers.push({ name, value: header.slice(colon + 1).trim() })
  }
  const s3 = s3Target(values, headers, io.env ?? process.env)
  if (typeof s3 === 'string') return usage(s3)
  const level = values['log-level'] ?? 'warn'
  if (!isLogLevel(level)) return usage(`Bad --log-level ${level}.`)
  const logger: Logger = pino({ level, base: { name: 'byoi-agent' } }, io.stderr)
  const { runCapture } = await import('./capture/run-capture.js')
  const view = progressView(io.stderr)
  try {
    const outcome = await runCapture({
      diskPath: values.disk, ...(s3 === undefined ? { uploadUrl: values.upload } : { s3 }), format, compress, headers, checksumType,
      signal: io.signal, logger, onEvent: view.onEvent,
    })
    io.stdout.write(values.json === true ? `${JSON.stringify({ status: 'done', ...outcome })}\n` : `${outcome.message}\n`)
    return EXIT_OK
  } catch (err) {
    // runCapture's failures are all InstallErrors (CAPTURE_CANCELLED, CAPTURE_INTERNAL_ERROR…).
    const failure = isInstallError(err) ? err : errors.captureInternalError(err)
    const outcome = { status: 'error', code: failure.code, message: failure.message }
    io.stdout.write(values.json === true ? `${JSON.stringify(outcome)}\n` : `${failure.message}\n`)
    return EXIT_INSTALL_FAILED
  } finally {
    view.close()
  }
}

/**
 * `--upload s3://BUCKET/KEY`: the S3 target, its credentials from the environment (argv is seen by
 * anyone's `ps`); undefined for an http(s) upload; a string: the usage problem (never a secret).
 */
function s3Target (values: CliValues, headers: unknown[], env: Record<string, string | undefined>): S3CaptureTarget | undefined | string {
  const upload = values.upload ?? ''
  if (!upload.startsWith('s3://')) {
    const s3Options = values['s3-endpoint'] !== undefined || values['s3-region'] !== undefined
    return s3Options ? '--s3-endpoint and --s3-region go with --upload s3://BUCKET/KEY.' : undefined
  }
  const slash = upload.indexOf('/', 's3://'.length)
  const bucket = slash < 0 ? '' : upload.slice('s3://'.length, slash)
  const key = slash < 0 ? '' : upload.slice(slash + 1)
  if (bucket === '' || key === '') return `Bad --upload ${JSON.stringify(upload.slice(0, 200))}: expected s3://BUCKET/KEY.`
  const endpoint = values['s3-endpoint']
  if (endpoint === undefined) return 'Missing --s3-endpoint URL (e.g. https://s3.eu-west-3.amazonaws.com).'
  if (!/^https?:\/\/[^/?#@]+\/?$/.test(endpoint)) return `Bad --s3-endpoint ${safeUrl(endpoint)}: expected http(s)://HOST[:PORT].`
  if (headers.length > 0) return '--header goes with an http(s) --upload: S3 requests are signed with the AWS_* credentials.'
  const accessKeyId = env.AWS_ACCESS_KEY_ID ?? ''
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY ?? ''
  if (accessKeyId === '' || secretAccessKey === '') return 'An S3 upload needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment.'
  const sessionToken = env.AWS_SESSION_TOKEN === undefined || env.AWS_SESSION_TOKEN === '' ? undefined : env.AWS_SESSION_TOKEN
  return {
    endpoint: endpoint.replace(/\/$/, ''), region: values['s3-region'] ?? 'us-east-1', bucket, key, accessKeyId, secretAccessKey,
    ...(sessionToken === undefined ? {} : { sessionToken }),
  }
}

/** `serve`: reads the options and files, listens until the signal, then shuts down gracefully. */
async function runServe (values: CliValues, { io, usage }: CommandContext): Promise<number> {
  const listen = parseListen(values.listen)
  if (values.listen === undefined) return usage('Missing --listen HOST:PORT.')
  if (listen === undefined) return usage(`Bad --listen ${values.listen}: expected HOST:PORT, e.g. 0.0.0.0:8443 or [::1]:8443.`)
  if (values.disk === undefined) return usage('Missing --disk PATH|auto.')
  const target = diskTarget(values.disk)
  if (typeof target === 'string') return usage(target)
  if (values['token-file'] === undefined) return usage('Missing --token-file FILE.')
  const common = commonOptions(values, 'info')
  if (typeof common === 'string') return usage(common)
  const { memoryLimitBytes, configDriveFs, level, downloadTuning } = common
  const reportUrl = values['report-url']
  if (reportUrl !== undefined) {
    const target = parseReportUrl(reportUrl)
    if (typeof target === 'string') return usage(`Bad --report-url ${safeUrl(reportUrl)}: ${target}.`)
  }
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) return usage('--tls-cert and --tls-key go together.')

  let token: string
  let tls: { cert: Buffer; key: Buffer } | undefined
  try {
    // One trailing line break (as `echo` or an editor leaves it) is not part of the token.
    token = (await readFile(values['token-file'], 'utf8')).replace(/\r?\n$/, '')
    if (values['tls-cert'] !== undefined && values['tls-key'] !== undefined) {
      tls = { cert: await readFile(values['tls-cert']), key: await readFile(values['tls-key']) }
    }
  } catch (err) {
    return usage(`Cannot read ${(err as { path?: string }).path ?? 'a file'}: ${(err as Error).message}`)
  }
  const tokenProblem = checkToken(token)
  if (tokenProblem !== undefined) return usage(`Bad --token-file ${values['token-file']}: ${tokenProblem}.`)
  await warnIfOpenToOthers(values['token-file'], io.stderr)
  const stateDir = values['state-dir'] ?? DEFAULT_STATE_DIR
  let stateDirMode: number | undefined
  try {
    stateDirMode = (await prepareStateDir(stateDir)).previousMode
  } catch (err) {
    return usage(`Bad --state-dir ${stateDir}: ${(err as Error).message}.`)
  }

  const logger = createServiceLogger({ level, destination: io.stderr })
  if (stateDirMode !== undefined) logger.warn({ stateDir, mode: octal(stateDirMode) }, `--state-dir ${stateDir} had mode ${octal(stateDirMode)}: set to 0700`)
  let disk: DiskView
  let chooseDisk: ((request: { diskGroupId?: number }) => Promise<ChosenDisk>) | undefined
  let diskWhy: string | undefined
  if ('hints' in target) {
    try {
      const chosen = await chooseInstallDisk(target, io.blockDevices)
      disk = chosen.disk
      diskWhy = chosen.why
      logger.info({ disk }, chosen.why)
    } catch (err) {
      logger.error({ err }, 'no disk for --disk hints')
      io.stderr.write(`--disk ${values.disk}: ${(err as Error).message}\n`)
      return EXIT_INSTALL_FAILED
    }
  } else if ('auto' in target) {
    let failure = ''
    const choice = await findAutoDisk(io.blockDevices).catch((err: unknown) => {
      logger.error({ err }, 'cannot list the block devices')
      failure = `cannot list them: ${(err as Error).message}`
      return undefined
    })
    if (choice?.disk === undefined) {
      const skipped = choice?.skipped.map((s) => `${s.name}: ${s.reason}`).join('; ') ?? failure
      io.stderr.write(`No disk found for --disk auto (${skipped === '' ? 'no block device' : skipped}).\n`)
      return EXIT_INSTALL_FAILED
    }
    disk = { path: choice.disk.path, auto: true, sizeBytes: choice.disk.sizeBytes, model: choice.disk.model }
    logger.info({ disk, skipped: choice.skipped }, `--disk auto chose ${choice.disk.path}`)
    // Chosen again when each install starts: the payload's disk group, or the first disk then free.
    chooseDisk = async (request) =>
      await chooseInstallDisk(request.diskGroupId === undefined ? { auto: true } : { groupId: request.diskGroupId }, io.blockDevices)
  } else {
    disk = { path: values.disk, auto: false, sizeBytes: null, model: null }
  }

  let service: Service
  try {
    // Loaded only for `serve`: fastify and the service cost `install` memory it does not need.
    const { startService } = await import('./api/start-service.js')
    service = await startService({
      host: listen.host,
      port: listen.port,
      token,
      disk,
      chooseDisk,
      diskWhy,
      stateDir,
      logger,
      reportUrl,
      tls,
      installOptions: {
        stream: values.stream === true,
        memoryLimitBytes,
        configDrive: configDriveFs === undefined ? undefined : { force: configDriveFs },
        downloadTuning,
      },
    })
  } catch (err) {
    logger.error({ err }, 'cannot start the service')
    io.stderr.write(`Cannot listen on ${values.listen}: ${(err as Error).message}\n`)
    return EXIT_INSTALL_FAILED
  }
  const how = 'auto' in target ? ' (auto)' : 'hints' in target ? ' (hints)' : ''
  io.stdout.write(`byoi-agent listening on ${service.url}, disk ${disk.path}${how}\n`)
  io.onServing?.(service)
  const signal = io.signal
  await new Promise<void>((resolve) => {
    if (signal === undefined) return // no signal: serve until the process is killed
    if (signal.aborted) resolve()
    else signal.addEventListener('abort', () => resolve(), { once: true })
  })
  await service.close()
  return EXIT_OK
}

/**
 * `ironic`: the agent as Ironic's deploy ramdisk (ironic/run-ironic-agent) until the conductor
 * powers it off, or the signal. Each deploy's install runs as `install` runs one: the state kept
 * per disk (a kill while writing is settled by the next start), the memory budget and tuning.
 */
async function runIronicCommand (values: CliValues, { io, usage }: CommandContext): Promise<number> {
  let kernel: IronicKernelParams = {}
  if (values['from-cmdline'] !== undefined) {
    try {
      kernel = parseKernelParams(await readFile(values['from-cmdline'], 'utf8'))
    } catch (err) {
      return usage(`Cannot read --from-cmdline ${values['from-cmdline']}: ${(err as Error).message}`)
    }
  }
  const apiUrl = values['api-url'] ?? kernel.apiUrl
  if (apiUrl === undefined) return usage('Missing --api-url URL (or ipa-api-url= on the kernel command line given by --from-cmdline).')
  if (!/^https?:\/\/[^/?#@\s]+/.test(apiUrl)) return usage(`Bad --api-url ${safeUrl(apiUrl)}: expected http(s)://HOST[:PORT].`)
  const listenText = values.listen ?? `${kernel.listenHost ?? '0.0.0.0'}:${kernel.listenPort ?? '9999'}`
  const listen = parseListen(/^[0-9a-f:]*:[0-9a-f:]*:/i.test(listenText.replace(/:\d+$/, '')) ? `[${listenText.replace(/:(\d+)$/, ']:$1')}` : listenText)
  if (listen === undefined) return usage(`Bad --listen ${listenText}: expected HOST:PORT.`)
  const callbackUrl = values['callback-url']
  if (callbackUrl !== undefined && !/^https?:\/\/[^/?#@\s]+\/?$/.test(callbackUrl)) {
    return usage(`Bad --callback-url ${safeUrl(callbackUrl)}: expected http(s)://HOST:PORT.`)
  }
  const advertisePort = kernel.advertisePort === undefined ? undefined : Number(kernel.advertisePort)
  if (advertisePort !== undefined && !(Number.isInteger(advertisePort) && advertisePort > 0 && advertisePort < 65536)) {
    return usage(`Bad ipa-advertise-port=${kernel.advertisePort}.`)
  }
  const seconds = (name: 'heartbeat-interval' | 'lookup-timeout', fallback: string | undefined): number | string | undefined => {
    const text = values[name] ?? fallback
    if (text === undefined) return undefined
    const value = Number(text)
    return /^\s*\d+(\.\d+)?\s*$/.test(text) && value > 0 ? value : `Bad --${name} ${text}: expected a number of seconds.`
  }
  const heartbeatSeconds = seconds('heartbeat-interval', undefined)
  const lookupTimeoutSeconds = seconds('lookup-timeout', kernel.lookupTimeout)
  if (typeof heartbeatSeconds === 'string') return usage(heartbeatSeconds)
  if (typeof lookupTimeoutSeconds === 'string') return usage(lookupTimeoutSeconds)
  const macs = values.mac?.map((mac) => mac.toLowerCase())
  const badMac = macs?.find((mac) => !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac))
  if (badMac !== undefined) return usage(`Bad --mac ${badMac}: expected six hexadecimal pairs separated by colons.`)
  const powerOff = values['power-off'] ?? 'exit'
  if (powerOff !== 'exit' && powerOff !== 'system') return usage(`Bad --power-off ${powerOff}: expected exit or system.`)
  const diskTargetOf = diskTarget(values.disk ?? 'auto')
  if (typeof diskTargetOf === 'string') return usage(diskTargetOf)
  const common = commonOptions(values, 'info')
  if (typeof common === 'string') return usage(common)
  const { memoryLimitBytes, configDriveFs, level, downloadTuning } = common

  const ring = new LogRing()
  const logger: Logger = pino({ level, base: { name: 'byoi-agent' } }, pino.multistream([{ stream: io.stderr, level }, { stream: ring, level }]))
  const sources = io.blockDevices
  const { runIronicAgent } = await import('./ironic/run-ironic-agent.js')
  const end = await runIronicAgent({
    apiUrl,
    listen,
    callbackUrl: callbackUrl?.replace(/\/$/, ''),
    advertiseHost: kernel.advertiseHost,
    advertisePort,
    insecure: values.insecure === true || kernel.insecure === true,
    token: kernel.token,
    macs,
    heartbeatSeconds,
    lookupTimeoutSeconds,
    version: agentVersion(),
    signal: io.signal,
    logger,
    onListening: (url) => { io.stdout.write(`byoi-agent ironic: agent API on ${url}, Ironic API ${safeUrl(apiUrl)}\n`) },
    powerAction: async (action) => {
      if (powerOff === 'exit') return
      await runCommand(action === 'power-off' ? 'poweroff' : 'reboot', ['-f'], 30_000)
    },
    machine: {
      chooseDisk: async (hints) => await chooseDeployDisk(diskTargetOf, hints, sources),
      erasableDisks: async () => 'path' in diskTargetOf ? [diskTargetOf.path] : freeDisks(await readBlockDevices(sources)).map((disk) => devicePath(disk.name)),
      eraseDisk: async (path) => await eraseDiskMetadata(path, { logger }),
      collectLogs: async () => await collectSystemLogs(ring),
      install: async (request, diskPath, { stream, signal, onNote }) => {
        const journal = await openInstallJournal({ diskPath, stateDir: values['state-dir'], logger, stderr: io.stderr })
        if (typeof journal === 'string') throw errors.diskUnavailable(diskPath, journal)
        try {
          const result = await runInstall({
            request, diskPath, memoryLimitBytes, stream, downloadTuning, signal, logger,
            configDrive: configDriveFs === undefined ? undefined : { force: configDriveFs },
            onEvent: (event) => {
              if (event.type === 'note') onNote(event.message)
              journal?.onEvent(event)
            },
            beforeFirstWrite: journal?.beforeFirstWrite,
          })
          await journal?.finish({ code: result.code, message: result.message })
          return result
        } catch (err) {
          const failure = isInstallError(err) ? err : errors.internalError(err)
          if (!isInstallError(err)) logger.error({ err }, 'unexpected error')
          await journal?.finish({ code: failure.code, message: failure.message })
          throw failure
        }
      },
    },
  })
  io.stdout.write(`byoi-agent ironic: ${end}\n`)
  return end === 'lookup-failed' ? EXIT_INSTALL_FAILED : EXIT_OK
}

/**
 * A deploy's disk: by the node's root device hints when it has some (Ironic passes them in each
 * command's node), else by --disk (a path, auto, or hints). None, or more than one, is DISK_NOT_CHOSEN.
 */
async function chooseDeployDisk (
  target: { path: string } | { auto: true } | { hints: RootDeviceHint[] },
  nodeHints: Record<string, unknown> | undefined,
  sources: BlockDeviceSources | undefined,
): Promise<DeployDisk> {
  if (nodeHints !== undefined) {
    let hints: RootDeviceHint[]
    try {
      hints = parseRootDeviceHints(nodeHints)
    } catch (err) {
      throw errors.diskNotChosen(`the node's root device hints cannot be used (${(err as Error).message})`, err)
    }
    const chosen = await chooseInstallDisk({ hints }, sources)
    return { path: chosen.disk.path, why: `${chosen.why} (the node's root_device)` }
  }
  if ('path' in target) return { path: target.path, why: `${target.path} chosen by --disk` }
  const chosen = await chooseInstallDisk(target, sources)
  return { path: chosen.disk.path, why: chosen.why }
}

/** `--disk`'s value: a path, `auto`, or `hints:` and root device hints (parsed); a string is the usage problem. */
function diskTarget (value: string): { path: string } | { auto: true } | { hints: RootDeviceHint[] } | string {
  if (value === 'auto') return { auto: true }
  if (!value.startsWith('hints:')) return { path: value }
  try {
    return { hints: parseHintsText(value.slice('hints:'.length)) }
  } catch (err) {
    return `Bad --disk ${value}: ${(err as Error).message}.`
  }
}

/** The CLI's default state folder: beside the service's, one state file per disk. */
const DEFAULT_INSTALL_STATE_DIR = `${DEFAULT_STATE_DIR}/install`

interface InstallJournal {
  onEvent: (event: InstallEvent) => void
  beforeFirstWrite: (disk: { path: string; sizeBytes: number }) => Promise<void>
  finish: (result: { code: InstallError['code'] | 'INSTALLED'; message: string }) => Promise<void>
}

/**
 * `install`'s state, as the service keeps it, in one file per disk (named from the disk's
 * resolved path): saved when the install starts, on each step, synced before the first write,
 * and at the end. First, a previous install on this disk that was killed (its process gone) is
 * settled as `serve` does at start: its disk made unbootable if it had begun writing, and said so
 * on standard error. Returns a usage problem for a bad --state-dir; undefined (logged) when the
 * default folder cannot be used (not root): the install goes on without a state.
 */
async function openInstallJournal (options: {
  diskPath: string
  stateDir: string | undefined
  logger: Logger
  stderr: CliIo['stderr']
}): Promise<InstallJournal | string | undefined> {
  const { logger } = options
  const dir = options.stateDir ?? DEFAULT_INSTALL_STATE_DIR
  try {
    await prepareStateDir(dir)
  } catch (err) {
    if (options.stateDir !== undefined) return `Bad --state-dir ${dir}: ${(err as Error).message}.`
    logger.warn({ err, stateDir: dir }, 'no install state kept: a kill during the install cannot be told to the next one')
    return undefined
  }
  const resolved = await realpath(options.diskPath).catch(() => options.diskPath)
  const store = new JobStateStore(dir, logger, `disk-${createHash('sha256').update(resolved).digest('hex').slice(0, 16)}.json`)
  const saved = await store.loadState()
  // Another install still running on this disk keeps its record: overwriting it would lose the disk write it recorded.
  if (saved?.status.state === 'running' && isAlive(saved.pid) && saved.pid !== process.pid) {
    return `An install is already running on ${options.diskPath} (pid ${saved.pid}); it keeps its state in ${dir}.`
  }
  if (saved?.status.state === 'running' && !isAlive(saved.pid)) {
    const { error, note } = await settleInterruptedInstall(saved, logger)
    options.stderr.write(`A previous install on ${saved.diskWrite?.path ?? saved.status.disk.path} did not finish: ${error.message}
${note === undefined ? '' : `${note}
`}`)
    await store.saveNow(interruptedStatus(saved.status, { code: error.code, message: error.message }, Date.now(), note), null)
  }
  const tracker = new JobStatusTracker(randomUUID(), { path: resolved, auto: false, sizeBytes: null, model: null }, Date.now())
  let diskWrite: DiskWriteRecord | null = null
  store.save(tracker.snapshot(), diskWrite)
  return {
    onEvent: (event) => {
      if (tracker.apply(event, Date.now())?.type === 'step') store.save(tracker.snapshot(), diskWrite)
    },
    beforeFirstWrite: async (disk) => {
      diskWrite = { path: disk.path, sizeBytes: disk.sizeBytes, at: new Date().toISOString() }
      if (!await store.saveNow(tracker.snapshot(), diskWrite)) logger.error({ disk: disk.path }, 'could not record that writing begins')
    },
    finish: async (result) => {
      tracker.finish(result, Date.now())
      await store.saveNow(tracker.snapshot(), diskWrite)
    },
  }
}


/** Whether the process that saved a state still runs (an install under way in another shell). */
function isAlive (pid: number | undefined): boolean {
  if (pid === undefined || pid === process.pid) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function octal (mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`
}

/**
 * A secret file that group or others may read or write gets a warning, as ssh gives for a key
 * (the file is still used: the rescue system may have made it so). Only its name and mode are shown.
 */
async function warnIfOpenToOthers (file: string, stderr: CliIo['stderr']): Promise<void> {
  const mode = (await stat(file).catch(() => undefined))?.mode
  if (mode === undefined || (mode & 0o077) === 0) return
  stderr.write(`Warning: --token-file ${file} is accessible by group or others (mode ${octal(mode & 0o7777)}); make it private: chmod 600 ${file}\n`)
}

/** `HOST:PORT`, `[IPv6]:PORT`; port 0 to 65535. */
function parseListen (text: string | undefined): { host: string; port: number } | undefined {
  if (text === undefined) return undefined
  const match = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(text)
  const host = match?.[1]
  const port = Number(match?.[2])
  if (host === undefined || !Number.isInteger(port) || port > 65535) return undefined
  return { host, port }
}


/** The options install and serve share, checked once: the values, or what is wrong with them. */
function commonOptions (values: CliValues, defaultLevel: string): string | {
  memoryLimitBytes: number | undefined
  configDriveFs: 'iso9660' | 'fat' | undefined
  level: LogLevel
  downloadTuning: DownloadTuning
} {
  let memoryLimitBytes: number | undefined
  if (values['memory-limit'] !== undefined) {
    memoryLimitBytes = parseByteSize(values['memory-limit'])
    if (memoryLimitBytes === undefined) return `Bad --memory-limit ${values['memory-limit']}: expected a number of bytes, e.g. 4294967296 or 4GiB.`
  }
  const configDriveFs = values['config-drive']
  if (configDriveFs !== undefined && configDriveFs !== 'iso9660' && configDriveFs !== 'fat') {
    return `Bad --config-drive ${configDriveFs}: expected iso9660 or fat.`
  }
  const level = values['log-level'] ?? defaultLevel
  if (!isLogLevel(level)) return `Bad --log-level ${level}.`
  const downloadTuning: DownloadTuning = {}
  if (values['low-speed-limit'] !== undefined) {
    downloadTuning.lowSpeedLimitBytesPerSecond = parseByteSize(values['low-speed-limit'])
    if (downloadTuning.lowSpeedLimitBytesPerSecond === undefined) {
      return `Bad --low-speed-limit ${values['low-speed-limit']}: expected bytes per second, e.g. 10240 or 10KiB (0: no limit).`
    }
  }
  if (values['low-speed-time'] !== undefined) {
    const seconds = parseSeconds(values['low-speed-time'])
    if (seconds === undefined) return `Bad --low-speed-time ${values['low-speed-time']}: expected a whole number of seconds, at least 1.`
    downloadTuning.lowSpeedTimeMs = seconds * 1000
  }
  if (values['download-deadline'] !== undefined) {
    const seconds = parseSeconds(values['download-deadline'])
    if (seconds === undefined || seconds * 1000 > MAX_DEADLINE_MS) {
      return `Bad --download-deadline ${values['download-deadline']}: expected a whole number of seconds, ` +
        `from 1 to ${Math.floor(MAX_DEADLINE_MS / 1000)}.`
    }
    downloadTuning.deadlineMs = seconds * 1000
  }
  if (values.connections !== undefined) {
    const connections = /^\s*\d+\s*$/.test(values.connections) ? Number(values.connections) : Number.NaN
    if (!(connections >= 1 && connections <= MAX_CONNECTIONS)) {
      return `Bad --connections ${values.connections}: expected a whole number from 1 to ${MAX_CONNECTIONS}.`
    }
    downloadTuning.connections = connections
  }
  return { memoryLimitBytes, configDriveFs, level, downloadTuning }
}

/** A whole number of seconds, 1 or more, that stays a safe integer in ms. */
function parseSeconds (text: string): number | undefined {
  if (!/^\s*\d+\s*$/.test(text)) return undefined
  const seconds = Number(text)
  return seconds >= 1 && Number.isSafeInteger(seconds * 1000) ? seconds : undefined
}
