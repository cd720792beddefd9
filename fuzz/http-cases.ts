/** Family `http`: a good raw image served badly. */
import type { ChecksumType } from '../agent/payload/install-request.js'
import { describeBehaviour, type Behaviour, type ContentLengthVariant, type WrongRange } from './behaviour.js'
import type { Fixtures } from './fixtures.js'
import type { FuzzCase, InstallMode } from './fuzz-case.js'
import type { Random } from './random.js'

/** What the suite passes as download tuning: short, so that failures end quickly. */
/**
 * Short timeouts so hostile servers end quickly: a trickle fails each attempt after 2 s under
 * 10 KiB/s, every download within 12 s (the case deadline is 20 s).
 */
export const FUZZ_TUNING = {
  connectTimeoutMs: 1000,
  idleTimeoutMs: 1500,
  lowSpeedLimitBytesPerSecond: 10 * 1024,
  lowSpeedTimeMs: 2000,
  deadlineMs: 12_000,
  maxAttempts: 3,
  retryBaseDelayMs: 10,
  maxRedirects: 3,
  // One GET: the hostile behaviours are scripted per request of the one GET and its resumes (the
  // hostile server answers `bytes=N-` only); over parallel ranges its first request would be spent
  // on the first part, answered whole, and the behaviour meant for the download would miss it.
  connections: 1,
}

export function pickChecksum (random: Random): ChecksumType | undefined {
  return random.weighted<ChecksumType | undefined>([[2, undefined], [2, 'sha512'], [1, 'sha256'], [1, 'md5'], [1, 'sha1']])
}

export function pickRawMode (random: Random): InstallMode {
  return random.weighted<InstallMode>([[3, 'memory'], [2, 'stream'], [1, 'over-budget']])
}

function pickBehaviour (random: Random, fileBytes: number): { behaviour: Behaviour; mustFail: boolean } {
  const attempts = FUZZ_TUNING.maxAttempts
  const somewhere = (): number => random.pick([0, 1, 511, 4096, 65536, 1048576, 1048577, random.int(0, fileBytes - 1)])
  const kind = random.weighted<Behaviour['kind']>([
    [1, 'ok'], [3, 'short-body'], [3, 'long-body'], [2, 'gzip'], [4, 'content-length'], [2, 'stall'], [1, 'trickle'],
    [1, 'redirect-loop'], [1, 'redirect-chain'], [2, 'storm'], [3, 'reset'], [3, 'wrong-range'],
  ])
  switch (kind) {
    case 'ok': return { behaviour: { kind, chunked: random.chance(0.5) }, mustFail: false }
    case 'short-body': {
      const cutAttempts = random.int(1, attempts + 1)
      const missingBytes = random.pick([1, 512, 4096, random.int(1, fileBytes)])
      return { behaviour: { kind, missingBytes, cutAttempts, ranges: random.chance(0.5) }, mustFail: false }
    }
    case 'long-body':
      return {
        behaviour: { kind, extraBytes: random.pick([1, 512, 65536, 1048576]), framing: random.pick(['keep-alive', 'close', 'http1.0'] as const) },
        mustFail: true,
      }
    case 'gzip': return { behaviour: { kind }, mustFail: false }
    case 'content-length': {
      const variant = random.pick<ContentLengthVariant>([
        'huge', 'over-safe', 'over-disk', 'malformed', 'negative', 'duplicate-same', 'duplicate-different', 'too-small', 'list',
      ])
      return { behaviour: { kind, variant }, mustFail: variant !== 'duplicate-same' }
    }
    case 'stall': {
      const stalls = random.int(1, attempts)
      const afterBytes = somewhere()
      const beforeHeaders = random.chance(0.3)
      // A stall after some bytes is progress: the next attempt resumes there (Range) and the agent's
      // count of failures in a row starts again, so only stalls that bring nothing can use up the attempts.
      const progress = !beforeHeaders && afterBytes > 0
      return { behaviour: { kind, afterBytes, attempts: stalls, beforeHeaders }, mustFail: stalls >= attempts && !progress }
    }
    case 'trickle': return { behaviour: { kind, intervalMs: random.pick([200, 500, 1000]) }, mustFail: true }
    case 'redirect-loop': return { behaviour: { kind, pair: random.chance(0.5) }, mustFail: true }
    case 'redirect-chain': {
      const hops = random.int(1, FUZZ_TUNING.maxRedirects + 2)
      return { behaviour: { kind, hops }, mustFail: hops > FUZZ_TUNING.maxRedirects }
    }
    case 'storm': {
      const count = random.int(1, attempts + 1)
      const statuses = Array.from({ length: random.int(1, 3) }, () => random.pick([500, 502, 503, 504]))
      return { behaviour: { kind, count, statuses, retryAfter: random.chance(0.3) }, mustFail: count >= attempts }
    }
    case 'reset': return { behaviour: { kind, afterBytes: somewhere(), attempts: random.int(1, attempts + 1), ranges: random.chance(0.6) }, mustFail: false }
    case 'wrong-range': {
      const answer = random.pick<WrongRange>(['full-200', 'wrong-start', 'wrong-total', 'no-content-range', '416', 'past-end'])
      return { behaviour: { kind, afterBytes: random.int(1, fileBytes - 1), answer }, mustFail: false }
    }
  }
}

export function httpCase (index: number, random: Random, fixtures: Fixtures): FuzzCase {
  const served = fixtures.gptImage
  const { behaviour, mustFail } = pickBehaviour(random, served.length)
  const mode = pickRawMode(random)
  const checksumType = pickChecksum(random)
  return {
    id: `http-${index}`,
    family: 'http',
    index,
    label: `${describeBehaviour(behaviour)} ${mode} ${checksumType ?? 'no-checksum'}`,
    kind: behaviour.kind === 'long-body'
      ? `long-body ${behaviour.framing}`
      : behaviour.kind === 'content-length' ? `content-length ${behaviour.variant}` : behaviour.kind,
    imageType: 'raw',
    served,
    guest: () => served,
    behaviour,
    mode,
    checksumType,
    mustFail,
  }
}
