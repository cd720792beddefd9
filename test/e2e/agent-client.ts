/**
 * The harness's side of the agent's API (docs/api.md), over the VM's host forward on 127.0.0.1:
 * health, install/start, capture/start, install/status, and the Server-Sent Events stream followed
 * to its end (a capture's job is followed there too).
 */
import { request, type IncomingMessage } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'

export interface StepStatus { name: string; status: 'todo' | 'doing' | 'done' | 'error'; startedAt: string | null; endedAt: string | null }
export interface Progress { step: string; bytes: number; totalBytes: number | null; bytesPerSecond: number; etaSeconds: number | null }
export interface ResultMessage { code: string; message: string }
/** A capture's outcome in the status, once it succeeded (docs/api.md, "Capturing the disk"). */
export interface CaptureView {
  bytes: number
  format: string
  digest: { type: 'sha256' | 'sha512'; hex: string }
  virtualSizeBytes: number
  payloads: {
    installStart: { templateName: string; userMetadata: Array<{ key: string; value: string }> }
    reinstall: { operatingSystem: string; customizations: Record<string, string> }
  }
}
export interface InstallStatus {
  state: 'idle' | 'running' | 'done' | 'error'
  /** install or capture; null while idle. */
  kind?: 'install' | 'capture' | null
  jobId: string | null
  disk: { path: string; auto: boolean; sizeBytes: number | null; model: string | null }
  steps: StepStatus[]
  progress: Progress | null
  result: ResultMessage | null
  /** A capture's outcome once it succeeded; null otherwise. */
  capture?: CaptureView | null
}

export type AgentEvent =
  | { type: 'status'; data: InstallStatus }
  | { type: 'step'; data: StepStatus & { jobId: string } }
  | { type: 'progress'; data: Progress & { jobId: string } }
  | { type: 'note'; data: { jobId: string; message: string } }
  | { type: 'result'; data: { jobId: string; state: 'done' | 'error'; result: ResultMessage } }

interface Answer { status: number; body: string }

export class AgentClient {
  constructor (readonly port: number, private readonly token: string) {}

  private async call (method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<Answer> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    return await new Promise((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: this.port,
        method,
        path,
        timeout: timeoutMs,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(payload.length) }),
        },
      }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => { text += chunk })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
        res.on('error', reject)
      })
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)))
      req.on('error', reject)
      req.end(payload)
    })
  }

  /** Polls GET /health until it answers 200; resolves with the time that took, or throws at the deadline. */
  async waitForHealth (timeoutMs: number, whyDead: () => string | undefined): Promise<number> {
    const started = Date.now()
    for (;;) {
      const ok = await this.call('GET', '/health', undefined, 2_000).then((a) => a.status === 200, () => false)
      if (ok) return Date.now() - started
      const dead = whyDead()
      if (dead !== undefined) throw new Error(`the VM stopped before the API answered: ${dead}`)
      if (Date.now() - started > timeoutMs) throw new Error(`the API did not answer /health within ${timeoutMs / 1000} s`)
      await sleep(500)
    }
  }

  async start (payload: unknown): Promise<string> {
    const answer = await this.call('POST', '/install/start', payload, 60_000)
    if (answer.status !== 202) throw new Error(`POST /install/start answered ${answer.status}: ${answer.body}`)
    const { jobId } = JSON.parse(answer.body) as { jobId: string }
    return jobId
  }

  /** POST /capture/start: the disk uploaded as an image; the job is followed as an install's is. */
  async startCapture (body: unknown): Promise<string> {
    const answer = await this.call('POST', '/capture/start', body, 60_000)
    if (answer.status !== 202) throw new Error(`POST /capture/start answered ${answer.status}: ${answer.body}`)
    const { jobId } = JSON.parse(answer.body) as { jobId: string }
    return jobId
  }

  async status (): Promise<InstallStatus> {
    const answer = await this.call('GET', '/install/status')
    if (answer.status !== 200) throw new Error(`GET /install/status answered ${answer.status}: ${answer.body}`)
    return JSON.parse(answer.body) as InstallStatus
  }

  /**
   * Follows GET /install/events until its `result` event (the stream then ends); each event is
   * handed to `onEvent`. Rejects after `timeoutMs`, or when the stream ends without a result.
   */
  async followEvents (onEvent: (event: AgentEvent) => void, timeoutMs: number): Promise<ResultMessage & { state: 'done' | 'error' }> {
    return await new Promise((resolve, reject) => {
      let settled = false
      const finish = (err: Error | undefined, value?: ResultMessage & { state: 'done' | 'error' }): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        req.destroy()
        if (err !== undefined) reject(err)
        else if (value !== undefined) resolve(value)
      }
      const timer = setTimeout(() => finish(new Error(`no result event within ${timeoutMs / 1000} s`)), timeoutMs)
      const headers = { authorization: `Bearer ${this.token}`, accept: 'text/event-stream' }
      const req = request({ host: '127.0.0.1', port: this.port, path: '/install/events', headers }, (res: IncomingMessage) => {
        if (res.statusCode !== 200) {
          finish(new Error(`GET /install/events answered ${res.statusCode ?? 0}`))
          return
        }
        res.setEncoding('utf8')
        let buffer = ''
        res.on('data', (chunk: string) => {
          buffer += chunk
          // Events are separated by a blank line; `event:` names it, `data:` lines carry JSON.
          for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            let type = 'message'
            const data: string[] = []
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) type = line.slice(6).trim()
              else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
            }
            if (data.length === 0) continue
            const event = { type, data: JSON.parse(data.join('\n')) as unknown } as AgentEvent
            onEvent(event)
            if (event.type === 'result') finish(undefined, { state: event.data.state, ...event.data.result })
          }
        })
        res.on('end', () => finish(new Error('the event stream ended without a result')))
        res.on('error', (err) => finish(err))
      })
      req.on('error', (err) => finish(err))
      req.end()
    })
  }
}
