/**
 * The load of bench/api-load.ts, in its own process (so its work is not counted in the agent's
 * event loop): `status` runs autocannon against GET /install/status with N connections, each at
 * RATE requests per second (0: as fast as answered); `events` opens N event streams when
 * it reads `go` on standard input, and reads them. Prints `ready` once the load runs (or can
 * start); on SIGTERM stops, prints one JSON line of figures and exits.
 * Usage: node dist/bench/api-pollers.js status|events BASE_URL TOKEN CONNECTIONS RATE
 */
import autocannon from 'autocannon'
import { setMaxListeners } from 'node:events'
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
  /** CPU time this load generator used (user + system), seconds. */
  cpuSeconds: number
}

const [kind, baseUrl, token, connectionsText, rateText] = process.argv.slice(2)
const connections = Number(connectionsText)
const rate = Number(rateText)
if ((kind !== 'status' && kind !== 'events') || baseUrl === undefined || token === undefined || !Number.isInteger(connections) || !Number.isFinite(rate)) {
  console.error('usage: api-pollers status|events BASE_URL TOKEN CONNECTIONS RATE')
  process.exit(2)
}
const headers = { authorization: `Bearer ${token}` }
const finish = (figures: Omit<PollerFigures, 'cpuSeconds'>): void => {
  const cpu = process.cpuUsage()
  process.stdout.write(`${JSON.stringify({ ...figures, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\n`, () => process.exit(0))
}

if (kind === 'status') {
  const started = Date.now()
  const instance = autocannon({
    url: `${baseUrl}/install/status`,
    connections,
    ...(rate > 0 ? { connectionRate: rate } : {}),
    duration: 3600, // stopped by SIGTERM long before
    headers,
  }, (err, result) => {
    if (err !== null && err !== undefined) {
      console.error(err)
      process.exit(1)
    }
    const seconds = (Date.now() - started) / 1000
    finish({
      kind: 'status',
      requests: result.requests.total,
      requestsPerSecond: Math.round(result.requests.total / seconds),
      non2xx: result.non2xx,
      errors: result.errors,
      latencyP50Ms: result.latency.p50,
      latencyP99Ms: result.latency.p99,
      events: 0,
    })
  })
  instance.on('start', () => process.stdout.write('ready\n'))
  process.once('SIGTERM', () => instance.stop())
} else {
  const controller = new AbortController()
  setMaxListeners(connections + 10, controller.signal)
  // The streams end with the install's result; the figures are printed on SIGTERM only.
  setInterval(() => {}, 60_000)
  let events = 0
  let errors = 0
  // Streams open on a `go` line on standard input (sent once the install started): opened
  // before, they would get the last job's result and end.
  process.stdout.write('ready\n')
  const go = new Promise<void>((resolve) => {
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', (text: string) => { if (text.includes('go')) resolve() })
  })
  const streams = Array.from({ length: connections }, async () => {
    try {
      await go
      const answer = await request(`${baseUrl}/install/events`, { headers, signal: controller.signal, bodyTimeout: 0 })
      for await (const chunk of answer.body) events += (chunk as Buffer).toString('utf8').split('\n\n').length - 1
    } catch {
      if (!controller.signal.aborted) errors++
    }
  })
  process.once('SIGTERM', () => {
    controller.abort()
    void Promise.all(streams).then(() => finish({ kind: 'events', requests: connections, requestsPerSecond: 0, non2xx: 0, errors, latencyP50Ms: null, latencyP99Ms: null, events }))
  })
}
