/**
 * Property: whatever the body, POST /install/start answers 202, or a 4xx JSON `{ code, message }`
 * naming what is wrong; never a 500, never a crash. A fake runner makes sure nothing installs.
 */
import t from 'tap'
import fc from 'fast-check'
import { buildApp } from '../../../agent/api/build-app.js'
import { parseInstallRequest } from '../../../agent/payload/parse-install-request.js'
import { ANSWER_CODES } from '../../../agent/api/api-schemas.js'
import type { TapTest } from '../../helpers/tap.js'
import { AUTH, FakeJobs, quietLogger, TOKEN } from './api-test-helpers.js'

const jobs = new FakeJobs({ oneAtATime: false })
const app = buildApp({ jobs, token: TOKEN, logger: quietLogger() })
t.teardown(() => app.close())

const KEYS = [
  'imageURL', 'imageType', 'imageCheckSum', 'imageCheckSumType', 'httpHeaders0Key', 'httpHeaders0Value', 'httpHeaders1Key', 'httpHeaders1Value',
  'configDriveUserData', 'configDriveMetadata', 'sshKey', 'efiBootloaderPath', 'hostname', '__proto__', 'constructor',
]
const URLS = [
  'https://example.invalid/a.raw',
  'http://user:pw@127.0.0.1:1/x.qcow2',
  'ftp://x/y',
  'not a url',
  '',
  'https://[::1]/a',
  `https://h.invalid/${'a'.repeat(3000)}`,
]
const TYPES = ['raw', 'qcow2', 'RAW', 'vmdk', '']
const SUMS = ['md5', 'sha1', 'sha256', 'sha512', 'crc32', '']

/** A string that is often a meaningful value for one of the payload's fields. */
const fieldValue = fc.oneof(
  fc.constantFrom(
    ...URLS, ...TYPES, ...SUMS, 'ab'.repeat(64), 'Authorization', 'Basic dXNlcjpwYXNz', '\\EFI\\BOOT\\BOOTX64.EFI', 'ssh-ed25519 AAAA',
    '{"a":"b"}', '{"a":1}', 'a\r\nb', '\u0000',
  ),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
)
const anyValue = fc.oneof({ weight: 4, arbitrary: fieldValue }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) })

const installStartish = fc.record({
  templateName: fc.oneof(fc.constant('byoi_64'), anyValue),
  details: fc.oneof(fc.record({ customHostname: anyValue }, { requiredKeys: [] }), anyValue),
  userMetadata: fc.oneof(
    {
      weight: 5,
      arbitrary: fc.array(fc.oneof(
        { weight: 5, arbitrary: fc.record({ key: fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 20 })), value: anyValue }) },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) },
      ), { maxLength: 12 }),
    },
    { weight: 1, arbitrary: anyValue },
  ),
}, { requiredKeys: [] })

const reinstallish = fc.record({
  operatingSystem: fc.oneof(fc.constant('byoi_64'), anyValue),
  customizations: fc.oneof(
    {
      weight: 5,
      arbitrary: fc.dictionary(
        fc.oneof(fc.constantFrom(...KEYS, 'httpHeaders', 'configDriveMetadata'), fc.string({ maxLength: 12 })),
        fc.oneof(anyValue, fc.dictionary(fc.string({ maxLength: 12 }), anyValue, { maxKeys: 4 })),
        { maxKeys: 10 },
      ),
    },
    { weight: 1, arbitrary: anyValue },
  ),
}, { requiredKeys: [] })

const VALID_ENTRIES = [
  { key: 'imageURL', value: 'https://example.invalid/a.raw' },
  { key: 'imageType', value: 'raw' },
  { key: 'imageCheckSumType', value: 'sha256' },
  { key: 'imageCheckSum', value: 'ab'.repeat(32) },
  { key: 'httpHeaders0Key', value: 'Authorization' },
  { key: 'httpHeaders0Value', value: 'Basic dXNlcjpwYXNz' },
  { key: 'configDriveUserData', value: '#!/bin/sh\necho hi\n' },
]

/** A valid install/start body with up to 2 entries replaced, dropped or doubled: near the edge of valid. */
const mutation = fc.record({ index: fc.nat(VALID_ENTRIES.length - 1), kind: fc.constantFrom('replace', 'drop', 'double'), value: anyValue })
const mutatedValid = fc.array(mutation, { maxLength: 2 }).map((mutations) => {
  const entries: unknown[] = VALID_ENTRIES.map((e) => ({ ...e }))
  for (const { index, kind, value } of mutations) {
    const entry = entries[index] as { key: string } | undefined
    if (entry === undefined) continue
    if (kind === 'replace') entries[index] = { key: entry.key, value }
    else if (kind === 'drop') entries.splice(index, 1)
    else entries.push({ ...entry })
  }
  return { templateName: 'byoi_64', details: { customHostname: 'fuzz' }, userMetadata: entries }
})

const statuses = new Map<number, number>()

async function expectSaneAnswer (t: TapTest, payload: string, body: unknown): Promise<boolean> {
  const answer = await app.inject({ method: 'POST', url: '/install/start', headers: { ...AUTH, 'content-type': 'application/json' }, payload })
  const status = answer.statusCode
  statuses.set(status, (statuses.get(status) ?? 0) + 1)
  let json: unknown
  try {
    json = JSON.parse(answer.body)
  } catch {
    t.fail(`not JSON: ${answer.body.slice(0, 200)}`)
    return false
  }
  if (status === 202) {
    if (typeof (json as { jobId?: unknown }).jobId !== 'string') return false
    // The API accepts exactly what the parser accepts.
    if (body !== undefined) parseInstallRequest(body)
    return true
  }
  const { code, message } = json as { code?: unknown; message?: unknown }
  const ok = status >= 400 && status < 500 && typeof code === 'string' && ANSWER_CODES.includes(code) &&
    typeof message === 'string' && message.length > 0 && Object.keys(json as object).length === 2
  if (!ok) t.fail(`HTTP ${status}: ${answer.body.slice(0, 300)} for ${payload.slice(0, 300)}`)
  return ok
}

t.test('valid bodies with a few entries changed', async (t) => {
  await fc.assert(fc.asyncProperty(mutatedValid, async (body) => expectSaneAnswer(t, JSON.stringify(body), body)), { numRuns: 300 })
  t.ok((statuses.get(202) ?? 0) > 0, 'some are accepted')
  t.ok((statuses.get(400) ?? 0) > 0, 'some are refused')
})

t.test('install/start-shaped bodies', async (t) => {
  await fc.assert(fc.asyncProperty(installStartish, async (body) => expectSaneAnswer(t, JSON.stringify(body), body)), { numRuns: 300 })
})

t.test('reinstall-shaped bodies', async (t) => {
  await fc.assert(fc.asyncProperty(reinstallish, async (body) => expectSaneAnswer(t, JSON.stringify(body), body)), { numRuns: 300 })
})

t.test('any JSON value', async (t) => {
  await fc.assert(fc.asyncProperty(fc.jsonValue(), async (body) => expectSaneAnswer(t, JSON.stringify(body), body)), { numRuns: 300 })
})

t.test('any text sent as JSON', async (t) => {
  const texts = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.jsonValue().map((v) => JSON.stringify(v).slice(0, -1)),
  )
  await fc.assert(fc.asyncProperty(texts, async (text) => {
    let body: unknown
    try {
      body = text.trim() === '' ? undefined : JSON.parse(text)
    } catch {
      body = undefined
    }
    return expectSaneAnswer(t, text, body)
  }), { numRuns: 300 })
})

t.test('the answers, counted', async (t) => {
  t.same([...statuses.keys()].filter((s) => s !== 202 && s !== 400).sort(), [], 'only 202 and 400')
  t.equal(jobs.started.length, statuses.get(202), `${jobs.started.length} accepted, ${statuses.get(400) ?? 0} refused`)
})
