/**
 * Shared by the API tests (unit and integration): a fake job runner, a log capture, payloads,
 * and a Server-Sent Events reader over undici.
 */
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { request, type Dispatcher } from 'undici'
import type { IncomingMessage } from 'node:http'
import type { InstallJobs, JobChange, JobListener, ReportMessage } from '../../../agent/service/job-runner.js'
import { copyStatus, freshSteps, idleStatus, type DiskView, type InstallStatus } from '../../../agent/service/job-status.js'
import type { InstallRequest } from '../../../agent/payload/install-request.js'
import type { CaptureJobRequest } from '../../../agent/payload/capture-request.js'
import type { JobKind } from '../../../agent/report/progress.js'
import { apiErrors } from '../../../agent/errors/api-error.js'
import { REDACTED_PATHS } from '../../../agent/service/service-logger.js'
import { startScriptedServer } from '../../helpers/scripted-server.js'

export const TOKEN = 'test-token-0123456789abcdef'
export const AUTH = { authorization: `Bearer ${TOKEN}` }
export const FAKE_DISK: DiskView = { path: '/dev/fake', auto: false, sizeBytes: null, model: null }

/** A job runner that installs nothing: tests drive its status and changes by hand. */
export class FakeJobs implements InstallJobs {
  readonly started: InstallRequest[] = []
  readonly captures: CaptureJobRequest[] = []
  cancels = 0
  current: InstallStatus = idleStatus(FAKE_DISK)
  private readonly listeners = new Set<JobListener>()

  /** `oneAtATime: false` (fuzzing): every start is accepted and nothing ever runs. */
  constructor (private readonly options: { oneAtATime?: boolean } = {}) {}

  start (installRequest: InstallRequest): { jobId: string } {
    return this.begin('install', () => this.started.push(installRequest))
  }

  startCapture (captureRequest: CaptureJobRequest): { jobId: string } {
    return this.begin('capture', () => this.captures.push(captureRequest))
  }

  private begin (kind: JobKind, accept: () => void): { jobId: string } {
    if (this.options.oneAtATime !== false && this.current.state === 'running') {
      throw apiErrors.busy(this.current.kind ?? 'install', this.current.jobId ?? '')
    }
    accept()
    const jobId = `job-${this.started.length + this.captures.length}`
    if (this.options.oneAtATime !== false) {
      this.current = { ...idleStatus(FAKE_DISK), state: 'running', kind, jobId, startedAt: new Date().toISOString(), steps: freshSteps(kind) }
      this.emit({ type: 'status', status: this.status() })
    }
    return { jobId }
  }

  status (): InstallStatus {
    return copyStatus(this.current)
  }

  cancel (kind?: JobKind): { jobId: string } {
    if (this.current.state !== 'running' || (kind !== undefined && this.current.kind !== kind)) throw apiErrors.notRunning(kind ?? 'install')
    this.cancels++
    return { jobId: this.current.jobId ?? '' }
  }

  subscribe (listener: JobListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  get subscribers (): number {
    return this.listeners.size
  }

  emit (change: JobChange): void {
    for (const listener of this.listeners) listener(change)
  }

  /** Ends the running job with this result. */
  finish (code: 'INSTALLED' | 'CANCELLED', message: string): void {
    const state = code === 'INSTALLED' ? 'done' : 'error'
    this.current = { ...this.current, state, endedAt: new Date().toISOString(), result: { code, message } }
    this.emit({ type: 'result', jobId: this.current.jobId ?? '', state, result: { code, message } })
  }
}

export interface LogCapture {
  logger: Logger
  text: () => string
  lines: () => Array<Record<string, unknown>>
}

/** The service's logger (same redaction as service/service-logger) at trace level, into memory. */
export function captureServiceLog (): LogCapture {
  const out: string[] = []
  const destination = new Writable({ write (chunk: Buffer, _encoding, callback) { out.push(chunk.toString()); callback() } })
  const logger = pino({ level: 'trace', base: { name: 'byoi-agent' }, redact: { paths: REDACTED_PATHS, censor: '[REDACTED]' } }, destination)
  return {
    logger,
    text: () => out.join(''),
    lines: () => out.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>),
  }
}

/** A silent logger. */
export function quietLogger (): Logger {
  return pino({ level: 'silent' })
}

/** A valid install/start body for `url`. */
export function installStartBody (url: string, extra: Array<{ key: string; value: string }> = []): Record<string, unknown> {
  return {
    details: { customHostname: 'api-test' },
    templateName: 'byoi_64',
    userMetadata: [{ key: 'imageURL', value: url }, { key: 'imageType', value: 'raw' }, ...extra],
  }
}

/** A valid reinstall body for `url`. */
export function reinstallBody (url: string, customizations: Record<string, unknown> = {}): Record<string, unknown> {
  return { operatingSystem: 'byoi_64', customizations: { imageURL: url, imageType: 'raw', hostname: 'api-test', ...customizations } }
}

export interface SseEvent {
  event: string
  data: unknown
  /** The last event ID as the client holds it after this event (its own `id`, or the one before). */
  id: string
}

/**
 * Parses a text/event-stream body (WHATWG HTML §9.2.6) into its events; comments are dropped.
 * `retry` is the last reconnection time the stream set, if any.
 */
export function parseSse (text: string): SseEvent[] & { retry?: number } {
  const events: SseEvent[] & { retry?: number } = []
  let id = ''
  for (const block of text.split('\n\n')) {
    let event = 'message'
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (line.startsWith(':') || line === '') continue
      const colon = line.indexOf(':')
      const field = colon < 0 ? line : line.slice(0, colon)
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'event') event = value
      else if (field === 'data') data.push(value)
      else if (field === 'id' && !value.includes('\0')) id = value
      else if (field === 'retry' && /^\d+$/.test(value)) events.retry = Number(value)
    }
    if (data.length > 0) events.push({ event, data: JSON.parse(data.join('\n')), id })
  }
  return events
}

/**
 * Opens GET /install/events and reads it to its end. `onEvent` sees each event as it arrives
 * (tests act on the stream mid-way, e.g. cancel after the first progress).
 */
export async function readEvents (baseUrl: string, options: {
  onEvent?: (event: SseEvent) => void
  dispatcher?: Dispatcher
  timeoutMs?: number
  lastEventId?: string
} = {}): Promise<{ statusCode: number; contentType: string; events: SseEvent[]; text: string }> {
  const headers = options.lastEventId === undefined ? AUTH : { ...AUTH, 'last-event-id': options.lastEventId }
  const answer = await request(`${baseUrl}/install/events`, { headers, dispatcher: options.dispatcher, bodyTimeout: options.timeoutMs ?? 60_000 })
  let text = ''
  let seen = 0
  for await (const chunk of answer.body) {
    text += (chunk as Buffer).toString('utf8')
    const complete = text.slice(0, text.lastIndexOf('\n\n') + 2)
    const events = parseSse(complete)
    for (const event of events.slice(seen)) options.onEvent?.(event)
    seen = events.length
  }
  return { statusCode: answer.statusCode, contentType: String(answer.headers['content-type']), events: parseSse(text), text }
}

/** Polls `check` every 10 ms until it holds; throws after `timeoutMs`. */
export async function waitFor (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** A control plane's `--report-url` endpoint on 127.0.0.1: keeps each POST's JSON, raw text and headers; answers 204. */
export async function startReportReceiver (): Promise<{
  url: string
  messages: ReportMessage[]
  headers: IncomingMessage['headers'][]
  raw: string[]
  close: () => Promise<void>
}> {
  const messages: ReportMessage[] = []
  const headers: IncomingMessage['headers'][] = []
  const raw: string[] = []
  const server = await startScriptedServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString()
      raw.push(text)
      headers.push(req.headers)
      messages.push(JSON.parse(text) as ReportMessage)
      res.writeHead(204).end()
    })
  })
  return { url: server.url('/report'), messages, headers, raw, close: server.close }
}
