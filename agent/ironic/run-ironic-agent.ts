/**
 * `byoi-agent ironic`: the agent as an Ironic conductor's deploy ramdisk, speaking
 * ironic-python-agent's protocol, in the order that agent follows (agent.py run()):
 *
 *   1. its API listens (agent-server), so that the first heartbeat's callback URL answers;
 *   2. lookup by the machine's MAC addresses until the node is waiting for its agent (lookup
 *      interval doubling up to 30 s, ipa-lookup-timeout in all): the node's UUID and the token;
 *   3. heartbeats: the first at once, then every `heartbeatSeconds` (default: a third to three
 *      fifths of Ironic's heartbeat_timeout, at least 5 s, as ironic-python-agent), and right after
 *      an async command ends, since the conductor only moves on when the agent heartbeats;
 *   4. the conductor's commands (agent-commands) until `standby.power_off` (or `run_image`) ends
 *      the run, or the signal stops it.
 *
 * Returns how it ended. A failed deploy is not the end: the conductor collects the logs and
 * tears the node down, and this agent keeps heartbeating until it is told or powered off.
 */
import type { Logger } from 'pino'
import { AgentCommands, type AgentMachine } from './agent-commands.js'
import { buildAgentServer } from './agent-server.js'
import { CommandLog } from './command-log.js'
import { callbackUrlOf, listMacAddresses, routeSourceAddress } from './host-facts.js'
import { IronicApiClient, IronicApiError, type LookupAnswer } from './ironic-api-client.js'

export interface IronicAgentOptions {
  apiUrl: string
  /** Where the agent API listens (port 0: a free port the system picks). */
  listen: { host: string; port: number }
  /** What Ironic is told to call; default http://ADVERTISE_HOST:PORT (the route's source address, the listening port). */
  callbackUrl?: string
  advertiseHost?: string
  advertisePort?: number
  insecure?: boolean
  /** A token given out of band (ipa-agent-token), used when the lookup shows it hidden. */
  token?: string
  /** The MAC addresses to look up by (default: the machine's, from /sys/class/net). */
  macs?: string[]
  /** Fixed time between heartbeats, in seconds (tests: under a second). */
  heartbeatSeconds?: number
  lookupTimeoutSeconds?: number
  lookupIntervalSeconds?: number
  /** What the commands act on; power_off and run_image end the run after their action. */
  machine: Omit<AgentMachine, 'powerOff' | 'reboot'>
  /** What power_off and run_image do once the run has stopped heartbeating: `exit` only ends the run. */
  powerAction: (action: 'power-off' | 'reboot') => Promise<void>
  version: string
  signal?: AbortSignal
  logger: Logger
  /** Called once the agent API listens (tests learn the URL). */
  onListening?: (url: string) => void
}

export type IronicAgentEnd = 'powered-off' | 'rebooted' | 'stopped' | 'lookup-failed'

const MIN_HEARTBEAT_SECONDS = 5
const MAX_LOOKUP_INTERVAL_SECONDS = 10

export async function runIronicAgent (options: IronicAgentOptions): Promise<IronicAgentEnd> {
  const { logger, signal } = options
  const client = new IronicApiClient(options.apiUrl, { insecure: options.insecure })
  let token: string | undefined = options.token
  let wake: (() => void) | undefined
  let ending: 'powered-off' | 'rebooted' | undefined
  const log = new CommandLog((result) => {
    logger.info({ command: result.command_name, status: result.command_status, error: result.command_error?.details }, 'command ended')
    wake?.()
  })
  const end = async (how: 'powered-off' | 'rebooted'): Promise<void> => {
    ending = how
    wake?.()
  }
  const commands = new AgentCommands(log, {
    ...options.machine,
    insecure: options.insecure,
    logger,
    powerOff: async () => { await end('powered-off') },
    reboot: async () => { await end('rebooted') },
  })
  const app = buildAgentServer({ commands, log, token: () => token, version: options.version, startedAt: Date.now(), logger })
  await app.listen({ host: options.listen.host, port: options.listen.port })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : options.listen.port
  const listeningUrl = callbackUrlOf('http', options.listen.host === '0.0.0.0' || options.listen.host === '::' ? '127.0.0.1' : options.listen.host, port)
  logger.info({ url: listeningUrl }, 'agent API listening')
  options.onListening?.(listeningUrl)

  try {
    const macs = options.macs ?? await listMacAddresses()
    const found = await lookUp(client, macs, options)
    if (found === undefined) return signal?.aborted === true ? 'stopped' : 'lookup-failed'
    if (found.token !== undefined) token = found.token
    else if (token === undefined && found.tokenRequired) {
      logger.error('the lookup showed the token hidden and none was given (ipa-agent-token): the conductor will refuse this agent')
    }
    const callbackUrl = options.callbackUrl ??
      callbackUrlOf('http', options.advertiseHost ?? await routeSourceAddress(options.apiUrl), options.advertisePort ?? port)
    logger.info({ node: found.nodeUuid, callbackUrl, macs }, 'node found')

    const intervalMs = (options.heartbeatSeconds ?? Math.max(MIN_HEARTBEAT_SECONDS, found.heartbeatTimeoutSeconds * (0.3 + Math.random() * 0.3))) * 1000
    while (signal?.aborted !== true && ending === undefined) {
      try {
        await client.heartbeat(found.nodeUuid, { callbackUrl, token, agentVersion: options.version })
        logger.debug('heartbeat sent')
      } catch (err) {
        logger.warn({ err: err instanceof IronicApiError ? err.message : String(err) }, 'heartbeat failed')
      }
      await sleep(intervalMs, signal, (wakeUp) => { wake = wakeUp })
    }
    if (ending === undefined) return 'stopped'
    // The conductor polls the power_off command once more before powering the node off: let it read SUCCEEDED.
    await sleep(1000, signal, () => {})
    await log.abortAll()
    await app.close()
    await options.powerAction(ending === 'powered-off' ? 'power-off' : 'reboot')
    return ending
  } finally {
    await log.abortAll()
    await app.close()
    await client.close()
  }
}

/** Lookup until found, the timeout or the signal; undefined when not found. */
async function lookUp (client: IronicApiClient, macs: string[], options: IronicAgentOptions): Promise<LookupAnswer | undefined> {
  const { logger, signal } = options
  const deadline = Date.now() + (options.lookupTimeoutSeconds ?? 600) * 1000
  let intervalS = options.lookupIntervalSeconds ?? 1
  if (macs.length === 0) logger.error('no network interface with a MAC address: the lookup cannot find the node')
  while (signal?.aborted !== true) {
    try {
      return await client.lookup(macs)
    } catch (err) {
      const retry = !(err instanceof IronicApiError) || err.retry
      logger.info({ err: (err as Error).message, macs }, retry ? 'lookup: not yet' : 'lookup refused')
      if (!retry || Date.now() + intervalS * 1000 > deadline) {
        logger.error({ macs }, 'lookup failed: no node waits for an agent with these MAC addresses')
        return undefined
      }
    }
    await sleep(intervalS * 1000, signal, () => {})
    intervalS = Math.min(MAX_LOOKUP_INTERVAL_SECONDS, intervalS * 2)
  }
  return undefined
}

/** Waits `ms`, or less when the signal fires or `onWake`'s function is called. */
async function sleep (ms: number, signal: AbortSignal | undefined, onWake: (wake: () => void) => void): Promise<void> {
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
    onWake(done)
  })
}
