import t from 'tap'
import {
  errorCode, honoursRetryAfter, isRedirectStatus, isRetryableError, isRetryableStatus, parseRetryAfterMs, retryDelayMs,
} from '../../../agent/download/retry-policy.js'

t.test('which statuses are retried, followed, or honour Retry-After', async (t) => {
  for (const s of [408, 429, 500, 502, 503, 504, 599]) t.ok(isRetryableStatus(s), `${s} retried`)
  for (const s of [200, 204, 301, 400, 401, 403, 404, 410, 416, 451]) t.notOk(isRetryableStatus(s), `${s} not retried`)
  for (const s of [301, 302, 303, 307, 308]) t.ok(isRedirectStatus(s), `${s} followed`)
  for (const s of [300, 304, 305, 306]) t.notOk(isRedirectStatus(s), `${s} not followed`)
  t.ok(honoursRetryAfter(429))
  t.ok(honoursRetryAfter(503))
  t.notOk(honoursRetryAfter(500))
})

t.test('which errors are retried', async (t) => {
  const err = (code: string): Error => Object.assign(new Error(code), { code })
  const retried = [
    'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EAI_AGAIN',
    'UND_ERR_SOCKET', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'HPE_INVALID_CONSTANT',
  ]
  for (const code of retried) {
    t.ok(isRetryableError(err(code)), code)
  }
  for (const code of ['UND_ERR_INVALID_ARG', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'DEPTH_ZERO_SELF_SIGNED_CERT']) {
    t.notOk(isRetryableError(err(code)), code)
  }
  t.notOk(isRetryableError(new TypeError('bug')), 'no code: a bug, not the network')
  t.ok(isRetryableError(new AggregateError([err('ECONNREFUSED'), err('ECONNREFUSED')])), 'happy eyeballs')
  t.equal(errorCode('text'), undefined)
})

t.test('parseRetryAfterMs: delay-seconds or HTTP-date (RFC 9110 §10.2.3)', async (t) => {
  const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')
  t.equal(parseRetryAfterMs('120', now), 120_000)
  t.equal(parseRetryAfterMs('0', now), 0)
  t.equal(parseRetryAfterMs('Wed, 21 Oct 2015 07:28:30 GMT', now), 30_000)
  t.equal(parseRetryAfterMs('Wed, 21 Oct 2015 07:27:00 GMT', now), 0, 'a past date means now')
  t.equal(parseRetryAfterMs('-5', now), undefined)
  t.equal(parseRetryAfterMs('soon', now), undefined)
  t.equal(parseRetryAfterMs(undefined, now), undefined)
})

t.test('retryDelayMs: exponential with equal jitter, capped; Retry-After wins, capped', async (t) => {
  const base = { baseDelayMs: 1000, maxDelayMs: 30_000 }
  t.equal(retryDelayMs({ ...base, attempt: 1, random: () => 0 }), 500)
  t.equal(retryDelayMs({ ...base, attempt: 1, random: () => 0.999999 }), 1000)
  t.equal(retryDelayMs({ ...base, attempt: 3, random: () => 0 }), 2000)
  t.equal(retryDelayMs({ ...base, attempt: 10, random: () => 0.999999 }), 30_000, 'capped')
  t.equal(retryDelayMs({ ...base, attempt: 1, retryAfterMs: 7000 }), 7000)
  t.equal(retryDelayMs({ ...base, attempt: 1, retryAfterMs: 3_600_000 }), 30_000)
  for (let attempt = 1; attempt <= 8; attempt++) {
    const d = retryDelayMs({ ...base, attempt })
    t.ok(d >= 0 && d <= 30_000, `attempt ${attempt}: ${d} ms within bounds`)
  }
})
