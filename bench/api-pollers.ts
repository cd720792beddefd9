/**
 * The load of bench/api-load.ts, in its own process (so its work is not counted in the agent's
 * event loop), started once before the first install and driven by lines on standard input, so
 * that the agent's process never forks while it holds an image (a fork write-protects all its
 * memory, and the next install would pay a page fault per page it reuses: see api-load.ts).
 *
 * - `status BASE_URL RATE`: autocannon against GET /install/status with CONNECTIONS connections,
 *   each at RATE requests per second (0: as fast as answered); prints `ready` once it runs.
 * - `events BASE_URL`: prints `ready`; on `go` opens CONNECTIONS event streams and reads them.
 * - `stop`: stops the load and prints one JSON line of figures (PollerFigures).
 * Prints `waiting` at start and after each load's figures. Standard input closing ends the process.
 * Usage: node dist/bench/api-pollers.js TOKEN CONNECTIONS
 */
import autocannon from 'autocannon'
import { setMaxListeners } from 'node:events'
import { createInterface } from 'node:readline'
import { request } from 'undici'

export interface PollerFigures {
  kind: 'status' | 'events'
  requests: number
  requestsPerSecond: number
  non2xx: number
  errors: number
  latencyP50Ms: number | null
  latencyP99Ms: number | null
  events: number
  /** CPU time this load generator used (user + system) while the load ran, seconds. */
  cpuSeconds: number
}

/** A running load: `stop` ends it and gives its figures (CPU time added by the caller). */
type Load = (input: AsyncIterator<string>) => Promise<Omit<PollerFigures, 'cpuSeconds'>>

const [token, connectionsText] = process.argv.slice(2)
const connections = Number(connectionsText)
if (token === undefined || !Number.isInteger(connections) || connections < 1) {
  console.error('usage: api-pollers TOKEN CONNECTIONS')
  process.exit(2)
}
const headers = { authorization: `Bearer ${token}` }

/** Status pollers until `stop`. */
function statusLoad (baseUrl: string, rate: number): Load {
  return async (input) => {
    const started = Date.now()
    let finished: (err: unknown, result: autocannon.Result) => void = () => {}
    const done = new Promise<autocannon.Result>((resolve, reject) => {
      finished = (err, result) => {
        if (err === null || err === undefined) resolve(result)
        else reject(err instanceof Error ? err : new Error('autocannon failed', { cause: err }))
      }
    })
    const instance = autocannon({
      url: `${baseUrl}/install/status`,
      connections,
      ...(rate > 0 ? { connectionRate: rate } : {}),
      duration: 3600, // stopped long before
      headers,
    }, (err, result) => finished(err, result))
    await new Promise<void>((resolve) => instance.once('start', () => resolve()))
    process.stdout.write('ready\n')
    await until(input, 'stop')
    instance.stop()
    const result = await done
    const seconds = (Date.now() - started) / 1000
    return {
      kind: 'status',
      requests: result.requests.total,
      requestsPerSecond: Math.round(result.requests.total / seconds),
      non2xx: result.non2xx,
      errors: result.errors,
      latencyP50Ms: result.latency.p50,
      latencyP99Ms: result.latency.p99,
      events: 0,
    }
  }
}

/**
 * Event streams, opened on `go` (sent once the install started: opened before, they would get the
 * last job's result and end), read until `stop` (they end with the install's result anyway).
 */
function eventsLoad (baseUrl: string): Load {
  return async (input) => {
    const controller = new AbortController()
    setMaxListeners(connections + 10, controller.signal)
    let events = 0
    let errors = 0
    process.stdout.write('ready\n')
    await until(input, 'go')
    const streams = Array.from({ length: connections }, async () => {
      try {
        const answer = await request(`${baseUrl}/install/events`, { headers, signal: controller.signal, bodyTimeout: 0 })
        for await (const chunk of answer.body) events += (chunk as Buffer).toString('utf8').split('\n\n').length - 1
      } catch {
        if (!controller.signal.aborted) errors++
      }
    })
    await until(input, 'stop')
    controller.abort()
    await Promise.all(streams)
    return { kind: 'events', requests: connections, requestsPerSecond: 0, non2xx: 0, errors, latencyP50Ms: null, latencyP99Ms: null, events }
  }
}

/** Reads lines until `word`; input closing ends the process. */
async function until (input: AsyncIterator<string>, word: string): Promise<void> {
  for (;;) {
    const line = await input.next()
    if (line.done === true) process.exit(0)
    if (line.value.trim() === word) return
  }
}

const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
process.stdout.write('waiting\n')
for (;;) {
  const line = await input.next()
  if (line.done === true) break
  const [kind, baseUrl, rateText] = line.value.trim().split(' ')
  if (baseUrl === undefined || (kind !== 'status' && kind !== 'events')) {
    if (line.value.trim() !== '') console.error(`api-pollers: unknown command: ${line.value}`)
    continue
  }
  const cpuBefore = process.cpuUsage()
  const figures = await (kind === 'status' ? statusLoad(baseUrl, Number(rateText ?? '0')) : eventsLoad(baseUrl))(input)
  const cpu = process.cpuUsage(cpuBefore)
  process.stdout.write(`${JSON.stringify({ ...figures, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\nwaiting\n`)
}
process.exit(0)
