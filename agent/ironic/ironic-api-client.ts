/**
 * The two calls a ramdisk agent makes to the Ironic API (ironic-python-agent's
 * ironic_api_client.py): `GET /v1/lookup` by the machine's MAC addresses, which names the node and
 * hands out the agent token once per deploy, and `POST /v1/heartbeat/{node}` with the URL the
 * conductor calls back and that token. API version 1.68 is asked for (lookup and heartbeat need a
 * version header; below 1.62 no token is issued; 1.68 adds agent_verify_ca, unused here).
 *
 * The token is a secret: it is never logged, and an error never quotes a request.
 */
import { Agent, request, type Dispatcher } from 'undici'
import { safeUrl } from '../report/redact.js'
import { isRecord } from './image-info.js'

export const IRONIC_API_VERSION = '1.68'
const REQUEST_TIMEOUT_MS = 30_000

export interface LookupAnswer {
  nodeUuid: string
  node: Record<string, unknown>
  /** The token (at least 32 characters), or undefined when the lookup showed it hidden (`******`: issued before). */
  token: string | undefined
  /** config.heartbeat_timeout in seconds (Ironic's [api]ramdisk_heartbeat_timeout, 300 by default). */
  heartbeatTimeoutSeconds: number
  tokenRequired: boolean
}

/** A call that did not succeed: `retry` says whether trying again later may help (404 while the node is not waiting, 409, 5xx, network). */
export class IronicApiError extends Error {
  constructor (message: string, readonly status: number | undefined, readonly retry: boolean) {
    super(message)
  }
}

export class IronicApiClient {
  private readonly dispatcher: Dispatcher
  private readonly base: string

  constructor (apiUrl: string, options: { insecure?: boolean } = {}) {
    this.base = apiUrl.replace(/\/+$/, '')
    this.dispatcher = new Agent({
      connect: { rejectUnauthorized: options.insecure !== true },
      headersTimeout: REQUEST_TIMEOUT_MS,
      bodyTimeout: REQUEST_TIMEOUT_MS,
    })
  }

  /** `GET /v1/lookup?addresses=…`: the node these MAC addresses belong to, while it waits for its agent. */
  async lookup (macs: readonly string[], nodeUuid?: string): Promise<LookupAnswer> {
    const query = new URLSearchParams()
    if (macs.length > 0) query.set('addresses', macs.join(','))
    if (nodeUuid !== undefined) query.set('node_uuid', nodeUuid)
    const { status, body } = await this.call('GET', `/v1/lookup?${query.toString()}`)
    if (status !== 200) throw this.failure('lookup', status, body)
    const parsed = parseJson(body)
    const node = isRecord(parsed) && isRecord(parsed.node) ? parsed.node : undefined
    const config = isRecord(parsed) && isRecord(parsed.config) ? parsed.config : {}
    if (node === undefined || typeof node.uuid !== 'string') throw new IronicApiError('the lookup answer names no node', status, false)
    const token = typeof config.agent_token === 'string' && config.agent_token.length >= 32 ? config.agent_token : undefined
    const timeout = Number(config.heartbeat_timeout)
    return {
      nodeUuid: node.uuid,
      node,
      token,
      heartbeatTimeoutSeconds: Number.isFinite(timeout) && timeout > 0 ? timeout : 300,
      tokenRequired: config.agent_token_required === true,
    }
  }

  /** `POST /v1/heartbeat/{node}`: 202 accepted (Ironic processes it after answering). */
  async heartbeat (nodeUuid: string, body: { callbackUrl: string; token: string | undefined; agentVersion: string }): Promise<void> {
    const payload: Record<string, string> = { callback_url: body.callbackUrl, agent_version: body.agentVersion }
    if (body.token !== undefined) payload.agent_token = body.token
    const { status, body: answer } = await this.call('POST', `/v1/heartbeat/${encodeURIComponent(nodeUuid)}`, JSON.stringify(payload))
    if (status !== 202) throw this.failure('heartbeat', status, answer)
  }

  async close (): Promise<void> {
    await this.dispatcher.close()
  }

  private async call (method: 'GET' | 'POST', path: string, body?: string): Promise<{ status: number; body: string }> {
    try {
      const answer = await request(`${this.base}${path}`, {
        method,
        dispatcher: this.dispatcher,
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          'x-openstack-ironic-api-version': IRONIC_API_VERSION,
        },
        ...(body === undefined ? {} : { body }),
      })
      // An answer's body is small (a node); a larger one is not read whole.
      const text = (await answer.body.text()).slice(0, 1024 * 1024)
      return { status: answer.statusCode, body: text }
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).name
      throw new IronicApiError(`${method} ${safeUrl(this.base)}${path.split('?')[0] ?? ''} failed: ${code}`, undefined, true)
    }
  }

  private failure (what: string, status: number, body: string): IronicApiError {
    // Ironic's error body: {"error_message": "{\"faultstring\": …}"}.
    const said = faultOf(body)
    const retry = status === 404 || status === 409 || status >= 500
    return new IronicApiError(`${what} answered HTTP ${status}${said === undefined ? '' : `: ${said}`}`, status, retry)
  }
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function faultOf (body: string): string | undefined {
  const outer = parseJson(body)
  const inner = isRecord(outer) && typeof outer.error_message === 'string' ? parseJson(outer.error_message) : outer
  const fault = isRecord(inner) ? inner.faultstring : undefined
  return typeof fault === 'string' ? fault.slice(0, 300) : undefined
}
