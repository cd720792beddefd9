import t from 'tap'
import { Ajv } from 'ajv'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildApp, BODY_LIMIT_BYTES } from '../../../agent/api/build-app.js'
import { errorSchema, healthSchema, jobAcceptedSchema, statusSchema } from '../../../agent/api/api-schemas.js'
import { agentVersion, buildOpenApiDocument } from '../../../agent/api/openapi-document.js'
import type { InstallJobs } from '../../../agent/service/job-runner.js'
import { parseInstallRequest } from '../../../agent/payload/parse-install-request.js'
import { captureStartSchema, installStartSchema, reinstallSchema } from '../../../agent/payload/schemas.js'
import { apiErrors } from '../../../agent/errors/api-error.js'
import { apiErrorDeclarations } from '../../../agent/errors/api-error-declarations.js'
import { installErrorDeclarations } from '../../../agent/errors/install-error-declarations.js'
import { installedDeclaration } from '../../../agent/errors/installed-message.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import type { TapTest } from '../../helpers/tap.js'
import { AUTH, captureServiceLog, FakeJobs, installStartBody, parseSse, quietLogger, reinstallBody, TOKEN } from './api-test-helpers.js'

const ajv = new Ajv({ validateFormats: false })
const validStatus = ajv.compile(statusSchema)
const validError = ajv.compile(errorSchema)
const validAccepted = ajv.compile(jobAcceptedSchema)
const validHealth = ajv.compile(healthSchema)

const URL_OK = 'https://images.example.invalid/debian.raw'

function appWith (jobs: InstallJobs, extra: { bodyLimitBytes?: number } = {}): FastifyInstance {
  const app = buildApp({ jobs, token: TOKEN, logger: quietLogger(), ...extra })
  t.teardown(() => app.close())
  return app
}

/** An answer is `{ code, message }` JSON with this status and code. */
function expectRefusal (
  t: TapTest,
  answer: { statusCode: number; headers: Record<string, unknown>; body: string },
  statusCode: number,
  code: string,
  message?: string,
): void {
  t.equal(answer.statusCode, statusCode, `HTTP ${statusCode}`)
  t.match(String(answer.headers['content-type']), /^application\/json/, 'JSON')
  const body = JSON.parse(answer.body) as unknown
  t.ok(validError(body), 'matches the Error schema')
  t.match(body, { code })
  if (message !== undefined) t.equal((body as { message: string }).message, message)
}

t.test('GET /health answers without a token', async (t) => {
  const app = appWith(new FakeJobs())
  const answer = await app.inject({ method: 'GET', url: '/health' })
  t.equal(answer.statusCode, 200)
  t.same(answer.json(), { status: 'ok' })
  t.ok(validHealth(answer.json()))
})

const AUTHENTICATED = [
  { method: 'GET', url: '/install/status' },
  { method: 'GET', url: '/install/events' },
  { method: 'POST', url: '/install/start' },
  { method: 'POST', url: '/install/cancel' },
  { method: 'POST', url: '/capture/start' },
  { method: 'POST', url: '/capture/cancel' },
  { method: 'GET', url: '/openapi.json' },
] as const

t.test('every route but /health: 401 without the right bearer token', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  const wrong: Array<Record<string, string> | undefined> = [
    undefined,
    { authorization: '' },
    { authorization: 'Bearer' },
    { authorization: 'Bearer ' },
    { authorization: `Bearer ${TOKEN}x` },
    { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
    { authorization: `Basic ${Buffer.from(`user:${TOKEN}`).toString('base64')}` },
    { authorization: TOKEN },
    { authorization: `Bearer ${TOKEN} extra` },
  ]
  for (const route of AUTHENTICATED) {
    for (const headers of wrong) {
      const answer = await app.inject({ ...route, headers, payload: route.method === 'POST' ? installStartBody(URL_OK) : undefined })
      expectRefusal(t, answer, 401, 'UNAUTHORIZED', 'Missing or wrong bearer token.')
      t.equal(answer.headers['www-authenticate'], 'Bearer realm="byoi-agent"')
    }
  }
  t.equal(jobs.started.length, 0, 'nothing started')
  t.equal(jobs.cancels, 0, 'nothing cancelled')
  // The scheme is case-insensitive (RFC 9110 §11.1).
  const lower = await app.inject({ method: 'GET', url: '/install/status', headers: { authorization: `bearer ${TOKEN}` } })
  t.equal(lower.statusCode, 200)
})

t.test('POST /install/start: 202 with a job id, for either body shape', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  const first = await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: installStartBody(URL_OK) })
  t.equal(first.statusCode, 202)
  t.same(first.json(), { jobId: 'job-1' })
  t.ok(validAccepted(first.json()))
  t.match(jobs.started[0], { source: 'install-start', imageUrl: URL_OK, imageType: 'raw', hostname: 'api-test' })
  jobs.finish('INSTALLED', 'done')
  const second = await app.inject({
    method: 'POST',
    url: '/install/start',
    headers: { ...AUTH, 'content-type': 'application/json; charset=utf-8' },
    payload: JSON.stringify(reinstallBody(URL_OK)),
  })
  t.equal(second.statusCode, 202)
  t.match(jobs.started[1], { source: 'reinstall', imageUrl: URL_OK })
})

t.test('POST /install/start: 409 while an install runs', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  t.equal((await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: installStartBody(URL_OK) })).statusCode, 202)
  const again = await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: reinstallBody(URL_OK) })
  expectRefusal(t, again, 409, 'BUSY', 'An install is already running, job job-1.')
  t.equal(jobs.started.length, 1)
})

t.test('POST /capture/start: 202 with the job id, the body parsed; one job at a time, either kind; cancel by kind', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  const body = { uploadURL: 'https://dav.example.invalid/a.raw.zst', httpHeaders: { Authorization: 'Bearer t' }, imageType: 'raw', compression: 'zstd' }
  const first = await app.inject({ method: 'POST', url: '/capture/start', headers: AUTH, payload: body })
  t.equal(first.statusCode, 202)
  t.same(first.json(), { jobId: 'job-1' })
  t.same(jobs.captures[0], {
    uploadUrl: body.uploadURL, httpHeaders: [{ name: 'Authorization', value: 'Bearer t' }], format: 'raw', compress: 'zstd', checksumType: 'sha512',
  })
  const status = await app.inject({ method: 'GET', url: '/install/status', headers: AUTH })
  t.ok(validStatus(status.json()), 'the status schema holds a capture')
  t.match(status.json(), { state: 'running', kind: 'capture', steps: [{ name: 'preflight' }, { name: 'scan' }, { name: 'upload' }, { name: 'finish' }] })
  expectRefusal(t, await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: installStartBody(URL_OK) }),
    409, 'BUSY', 'A capture is already running, job job-1.')
  expectRefusal(t, await app.inject({ method: 'POST', url: '/capture/start', headers: AUTH, payload: body }), 409, 'BUSY')
  expectRefusal(t, await app.inject({ method: 'POST', url: '/install/cancel', headers: AUTH }), 409, 'NOT_RUNNING', 'No install is running.')
  const cancel = await app.inject({ method: 'POST', url: '/capture/cancel', headers: AUTH })
  t.equal(cancel.statusCode, 202)
  t.same(cancel.json(), { jobId: 'job-1' })
  t.equal(jobs.cancels, 1)
  t.equal(jobs.started.length, 0, 'no install started')
})

t.test('POST /capture/start: 400 naming the field, never quoting a value; /capture/cancel 409 when no capture runs', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  const bodies: Array<[unknown, RegExp]> = [
    [{}, /uploadURL/],
    [{ uploadURL: 'file:///etc/passwd' }, /uploadURL/],
    [{ uploadURL: URL_OK, imageType: 'vhd' }, /imageType/],
    [{ uploadURL: URL_OK, httpHeaders: { 'X-Token': 'secret-value\r\nInjected: 1' } }, /httpHeaders/],
  ]
  for (const [body, field] of bodies) {
    const answer = await app.inject({ method: 'POST', url: '/capture/start', headers: AUTH, payload: body as object })
    expectRefusal(t, answer, 400, 'PAYLOAD_')
    t.match(answer.json<{ message: string }>().message, field)
    t.notMatch(answer.body, /secret-value|passwd/)
  }
  t.equal(jobs.captures.length, 0)
  await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: installStartBody(URL_OK) })
  expectRefusal(t, await app.inject({ method: 'POST', url: '/capture/cancel', headers: AUTH }), 409, 'NOT_RUNNING', 'No capture is running.')
})

t.test('POST /install/start: 400 naming the bad field, as the payload parser says', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  const bodies: Array<{ body: unknown; field: RegExp }> = [
    { body: {}, field: /userMetadata or customizations/ },
    { body: [], field: /request body/ },
    { body: null, field: /request body/ },
    { body: 42, field: /request body/ },
    { body: 'a string', field: /request body/ },
    { body: { templateName: 'byoi_64' }, field: /userMetadata/ },
    { body: { templateName: 'byoi_64', userMetadata: 'x' }, field: /userMetadata/ },
    { body: { templateName: 'byoi_64', userMetadata: [{ key: 'imageURL', value: 7 }] }, field: /userMetadata\[0\]\.value/ },
    { body: { templateName: 'byoi_64', userMetadata: [{ key: 'imageType', value: 'raw' }] }, field: /imageURL/ },
    { body: installStartBody('ftp://example.invalid/a.raw'), field: /imageURL/ },
    { body: { ...installStartBody(URL_OK), userMetadata: [{ key: 'imageURL', value: URL_OK }, { key: 'imageType', value: 'vmdk' }] }, field: /qcow2, raw/ },
    { body: installStartBody(URL_OK, [{ key: 'imageCheckSumType', value: 'crc32' }, { key: 'imageCheckSum', value: 'ab' }]), field: /checkSumType/ },
    { body: installStartBody(URL_OK, [{ key: 'imageCheckSumType', value: 'sha512' }, { key: 'imageCheckSum', value: 'ab' }]), field: /imageCheckSum/ },
    { body: installStartBody(URL_OK, [{ key: 'httpHeaders0Key', value: 'Bad Name' }, { key: 'httpHeaders0Value', value: 'x' }]), field: /httpHeaders0Key/ },
    { body: reinstallBody(URL_OK, { httpHeaders: { Authorization: 'Basic a\nb' } }), field: /httpHeaders/ },
    { body: reinstallBody(URL_OK, { hostname: 'not a host!' }), field: /hostname/ },
    { body: reinstallBody(URL_OK, { sshKey: 'ssh-rsa nope' }), field: /sshKey/ },
    { body: reinstallBody(URL_OK, { efiBootloaderPath: 'EFI/BOOT' }), field: /efiBootloaderPath/ },
    { body: reinstallBody(URL_OK, { configDriveMetadata: { a: 1 } }), field: /configDriveMetadata/ },
    { body: { operatingSystem: 'byoi_64', customizations: [] }, field: /customizations/ },
  ]
  for (const { body, field } of bodies) {
    let expected: { code: string; message: string } | undefined
    try {
      parseInstallRequest(body)
    } catch (err) {
      if (isInstallError(err)) expected = err.toJSON()
    }
    if (expected === undefined) {
      t.fail(`the parser accepts ${JSON.stringify(body)}`)
      continue
    }
    const answer = await app.inject({
      method: 'POST',
      url: '/install/start',
      headers: { ...AUTH, 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    })
    expectRefusal(t, answer, 400, expected.code, expected.message)
    t.match(expected.message, field, `${expected.message} names the field`)
  }
  t.equal(jobs.started.length, 0, 'nothing started')
})

t.test('POST /install/start: bodies fastify refuses are 4xx { code, message } too', async (t) => {
  const app = appWith(new FakeJobs())
  const post = async (payload: string | Buffer, contentType?: string): Promise<LightMyRequestResponse> =>
    await app.inject({ method: 'POST', url: '/install/start', headers: contentType === undefined ? AUTH : { ...AUTH, 'content-type': contentType }, payload })
  expectRefusal(t, await post('{"templateName": ', 'application/json'), 400, 'PAYLOAD_BAD_FIELD')
  expectRefusal(t, await post('{"__proto__": {"x": 1}, "userMetadata": []}', 'application/json'), 400, 'PAYLOAD_BAD_FIELD')
  expectRefusal(t, await post('{"constructor": {"prototype": {"x": 1}}}', 'application/json'), 400, 'PAYLOAD_BAD_FIELD')
  expectRefusal(t, await post('', 'application/json'), 400, 'PAYLOAD_BAD_FIELD', 'Bad request body, expected: a JSON object.')
  expectRefusal(
    t,
    await post(JSON.stringify(installStartBody(URL_OK)), 'text/plain'),
    415,
    'UNSUPPORTED_MEDIA_TYPE',
    'Bad Content-Type, expected: application/json.',
  )
  expectRefusal(t, await post('imageURL=x', 'application/x-www-form-urlencoded'), 415, 'UNSUPPORTED_MEDIA_TYPE')
  expectRefusal(t, await post(Buffer.from([0, 1, 2]), 'application/octet-stream'), 415, 'UNSUPPORTED_MEDIA_TYPE')
  // Over the default limit (20 MiB): 413, with the limit in the message.
  const big = JSON.stringify(installStartBody(URL_OK, [{ key: 'configDriveUserData', value: 'x'.repeat(BODY_LIMIT_BYTES) }]))
  expectRefusal(t, await post(big, 'application/json'), 413, 'BODY_TOO_LARGE', `Request body too large, expected: at most ${BODY_LIMIT_BYTES} bytes.`)
})

t.test('the body limit leaves room for 16 MiB of user data', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  const userData = `#!/bin/sh\n${'echo "hello"\n'.repeat((16 * 1024 * 1024 - 10) / 13)}`
  const body = JSON.stringify(installStartBody(URL_OK, [{ key: 'configDriveUserData', value: userData }]))
  t.ok(Buffer.byteLength(userData) <= 16 * 1024 * 1024)
  t.ok(body.length > 16 * 1024 * 1024, 'the escaped body is over 16 MiB')
  const answer = await app.inject({ method: 'POST', url: '/install/start', headers: { ...AUTH, 'content-type': 'application/json' }, payload: body })
  t.equal(answer.statusCode, 202)
  t.equal(jobs.started[0]?.userData, userData)
})

t.test('a smaller body limit is kept and said', async (t) => {
  const app = appWith(new FakeJobs(), { bodyLimitBytes: 1024 })
  const answer = await app.inject({
    method: 'POST',
    url: '/install/start',
    headers: { ...AUTH, 'content-type': 'application/json' },
    payload: JSON.stringify({ pad: 'x'.repeat(2000) }),
  })
  expectRefusal(t, answer, 413, 'BODY_TOO_LARGE', 'Request body too large, expected: at most 1024 bytes.')
})

t.test('unknown routes and methods: 404 { code, message }, with or without a token; a malformed URL: 400', async (t) => {
  const app = appWith(new FakeJobs())
  for (const headers of [undefined, AUTH]) {
    expectRefusal(t, await app.inject({ method: 'GET', url: '/nope', headers }), 404, 'NOT_FOUND', 'No such route, the routes are listed in /openapi.json.')
    expectRefusal(t, await app.inject({ method: 'DELETE', url: '/install/status', headers }), 404, 'NOT_FOUND')
    expectRefusal(t, await app.inject({ method: 'GET', url: '/install/start', headers }), 404, 'NOT_FOUND')
  }
  expectRefusal(t, await app.inject({ method: 'GET', url: '/install/%zz', headers: AUTH }), 400, 'BAD_REQUEST', 'Bad request: the URL is malformed.')
})

t.test('GET /install/status: the runner\'s status, matching the Status schema', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  const idle = await app.inject({ method: 'GET', url: '/install/status', headers: AUTH })
  t.equal(idle.statusCode, 200)
  t.equal(idle.headers['cache-control'], 'no-store')
  t.same(idle.json(), jobs.status())
  t.ok(validStatus(idle.json()), JSON.stringify(validStatus.errors))
  t.match(idle.json(), { state: 'idle', jobId: null, result: null, progress: null })
  jobs.current = {
    ...jobs.current,
    state: 'running',
    jobId: 'job-9',
    startedAt: new Date().toISOString(),
    steps: jobs.current.steps.map((s, i) => {
      if (i === 0) return { ...s, status: 'done', startedAt: 'a', endedAt: 'b' }
      if (i === 1) return { ...s, status: 'doing', startedAt: 'b' }
      return s
    }),
    progress: { step: 'download', bytes: 10, totalBytes: 100, bytesPerSecond: 5, etaSeconds: 18 },
  }
  const running = await app.inject({ method: 'GET', url: '/install/status', headers: AUTH })
  t.same(running.json(), jobs.status())
  t.ok(validStatus(running.json()), JSON.stringify(validStatus.errors))
})

t.test('POST /install/cancel: 409 when idle, 202 with the job id when running', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  expectRefusal(t, await app.inject({ method: 'POST', url: '/install/cancel', headers: AUTH }), 409, 'NOT_RUNNING', 'No install is running.')
  await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: installStartBody(URL_OK) })
  const cancel = await app.inject({ method: 'POST', url: '/install/cancel', headers: AUTH })
  t.equal(cancel.statusCode, 202)
  t.same(cancel.json(), { jobId: 'job-1' })
  t.equal(jobs.cancels, 1)
  // A JSON content type with no body is fine on cancel.
  const empty = await app.inject({ method: 'POST', url: '/install/cancel', headers: { ...AUTH, 'content-type': 'application/json' }, payload: '' })
  t.equal(empty.statusCode, 202)
})

t.test('GET /install/events after the job ended: status, result, end', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: installStartBody(URL_OK) })
  jobs.finish('INSTALLED', 'Image installed.')
  const answer = await app.inject({ method: 'GET', url: '/install/events', headers: AUTH })
  t.equal(answer.statusCode, 200)
  t.match(String(answer.headers['content-type']), /^text\/event-stream/)
  const events = parseSse(answer.body)
  t.same(events.map((e) => e.event), ['status', 'result'])
  t.same(events[0]?.data, jobs.status())
  t.same(events[1]?.data, { jobId: 'job-1', state: 'done', result: { code: 'INSTALLED', message: 'Image installed.' } })
  t.equal(jobs.subscribers, 0, 'nothing left subscribed')
})

t.test('GET /install/events while running: status, every change live, ends after the result', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: installStartBody(URL_OK) })
  const pending = app.inject({ method: 'GET', url: '/install/events', headers: AUTH })
  while (jobs.subscribers === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  const at = new Date().toISOString()
  jobs.emit({ type: 'step', jobId: 'job-1', step: { name: 'preflight', status: 'doing', startedAt: at, endedAt: null } })
  jobs.emit({ type: 'progress', jobId: 'job-1', progress: { step: 'download', bytes: 5, totalBytes: 10, bytesPerSecond: 1, etaSeconds: 5 } })
  jobs.emit({ type: 'note', jobId: 'job-1', message: 'streaming' })
  jobs.finish('CANCELLED', 'Install cancelled, the disk was left unbootable.')
  const answer = await pending
  const events = parseSse(answer.body)
  t.same(events.map((e) => e.event), ['status', 'step', 'progress', 'note', 'result'])
  t.match(events[0]?.data, { state: 'running', jobId: 'job-1' })
  t.same(events[1]?.data, { jobId: 'job-1', name: 'preflight', status: 'doing', startedAt: at, endedAt: null })
  t.same(events[2]?.data, { jobId: 'job-1', step: 'download', bytes: 5, totalBytes: 10, bytesPerSecond: 1, etaSeconds: 5 })
  t.same(events[4]?.data, { jobId: 'job-1', state: 'error', result: { code: 'CANCELLED', message: 'Install cancelled, the disk was left unbootable.' } })
  t.equal(jobs.subscribers, 0)
})

t.test('GET /install/events when idle waits for the next job, and sends keep-alive comments', async (t) => {
  const jobs = new FakeJobs()
  const app = buildApp({ jobs, token: TOKEN, logger: quietLogger(), heartbeatMs: 20 })
  t.teardown(() => app.close())
  const pending = app.inject({ method: 'GET', url: '/install/events', headers: AUTH })
  while (jobs.subscribers === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  await new Promise((resolve) => setTimeout(resolve, 60))
  jobs.start(parseInstallRequest(installStartBody(URL_OK)))
  jobs.finish('INSTALLED', 'ok')
  const answer = await pending
  t.match(answer.body, /^: keep-alive$/m, 'a keep-alive comment')
  t.same(parseSse(answer.body).map((e) => e.event), ['status', 'status', 'result'])
})

t.test('closing the app ends open event streams', async (t) => {
  const jobs = new FakeJobs()
  const app = buildApp({ jobs, token: TOKEN, logger: quietLogger() })
  const pending = app.inject({ method: 'GET', url: '/install/events', headers: AUTH })
  while (jobs.subscribers === 0) await new Promise((resolve) => setTimeout(resolve, 5))
  await app.close()
  const answer = await pending
  t.same(parseSse(answer.body).map((e) => e.event), ['status'])
  t.equal(jobs.subscribers, 0)
})

t.test('GET /openapi.json: OpenAPI 3.1 with both payload schemas as a oneOf request body', async (t) => {
  const app = appWith(new FakeJobs())
  const answer = await app.inject({ method: 'GET', url: '/openapi.json', headers: AUTH })
  t.equal(answer.statusCode, 200)
  const doc = answer.json<{
    openapi: string
    paths: Record<string, Record<string, { responses: Record<string, unknown>; requestBody?: unknown; security?: unknown }>>
    components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> }
  }>()
  t.equal(doc.openapi, '3.1.0')
  t.same(doc.components.schemas['InstallStart'], installStartSchema, 'install/start schema embedded as is')
  t.same(doc.components.schemas['Reinstall'], reinstallSchema, 'reinstall schema embedded as is')
  t.same(doc.paths['/install/start']?.['post']?.requestBody, {
    required: true,
    content: { 'application/json': { schema: { oneOf: [{ $ref: '#/components/schemas/InstallStart' }, { $ref: '#/components/schemas/Reinstall' }] } } },
  })
  t.same(Object.keys(doc.paths).sort(), [
    '/capture/cancel', '/capture/start', '/health', '/install/cancel', '/install/events', '/install/start', '/install/status', '/openapi.json',
  ])
  t.same(doc.components.schemas['CaptureStart'], captureStartSchema, 'capture-start schema embedded as is')
  t.same(doc.paths['/capture/start']?.['post']?.requestBody, {
    required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/CaptureStart' } } },
  })
  t.same(Object.keys(doc.paths['/install/start']?.['post']?.responses ?? {}).sort(), ['202', '400', '401', '409', '413', '415', '503'])
  t.same(Object.keys(doc.paths['/install/events']?.['get']?.responses ?? {}).sort(), ['200', '204', '401'])
  t.same(doc.paths['/health']?.['get']?.security, [], '/health needs no token')
  t.same(doc.components.securitySchemes, { bearer: { type: 'http', scheme: 'bearer', description: 'The token of --token-file.' } })
  // Every $ref points at a component.
  const refs = JSON.stringify(doc).match(/"\$ref":"#\/components\/schemas\/(\w+)"/g) ?? []
  for (const ref of refs) t.ok(doc.components.schemas[/schemas\/(\w+)/.exec(ref)?.[1] ?? ''] !== undefined, ref)
  t.same(
    (doc.components.schemas['Error'] as { properties: { code: { enum: string[] } } }).properties.code.enum,
    [...Object.keys(installedDeclaration), ...Object.keys(installErrorDeclarations), ...Object.keys(apiErrorDeclarations)],
    'every code',
  )
  t.same(answer.json(), buildOpenApiDocument({ version: agentVersion(), bodyLimitBytes: BODY_LIMIT_BYTES }), 'the document buildOpenApiDocument makes')
  t.match(agentVersion(), /^\d+\.\d+\.\d+/)
})

t.test('an error in the service is a 500 { code, message } and is logged; a refusal is not an error', async (t) => {
  const broken: InstallJobs = {
    start: () => { throw new Error('boom') },
    startCapture: () => { throw new Error('boom') },
    status: () => { throw new TypeError('bug') },
    cancel: () => { throw apiErrors.notRunning('install') },
    subscribe: () => () => {},
  }
  const log = captureServiceLog()
  const app = buildApp({ jobs: broken, token: TOKEN, logger: log.logger })
  t.teardown(() => app.close())
  const answer = await app.inject({ method: 'GET', url: '/install/status', headers: AUTH })
  expectRefusal(t, answer, 500, 'SERVICE_ERROR', 'The agent failed on an internal error, details are in its log.')
  expectRefusal(t, await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: installStartBody(URL_OK) }), 500, 'SERVICE_ERROR')
  t.ok(log.lines().some((l) => l['level'] === 50 && l['code'] === 'SERVICE_ERROR'), 'logged at error level')
})

t.test('POST /install/start while shutting down: 503 SHUTTING_DOWN', async (t) => {
  const jobs = new FakeJobs()
  jobs.start = () => { throw apiErrors.shuttingDown() }
  const app = appWith(jobs)
  const answer = await app.inject({ method: 'POST', url: '/install/start', headers: AUTH, payload: installStartBody(URL_OK) })
  expectRefusal(t, answer, 503, 'SHUTTING_DOWN', 'The agent is shutting down, no install can start.')
})

t.test('the token is never logged', async (t) => {
  const log = captureServiceLog()
  const app = buildApp({ jobs: new FakeJobs(), token: TOKEN, logger: log.logger })
  t.teardown(() => app.close())
  await app.inject({ method: 'GET', url: '/install/status', headers: AUTH })
  await app.inject({ method: 'GET', url: '/install/status', headers: { authorization: `Bearer ${TOKEN}-wrong` } })
  await app.inject({ method: 'GET', url: '/nope', headers: AUTH })
  await app.inject({ method: 'POST', url: '/install/start', headers: { ...AUTH, 'content-type': 'application/json' }, payload: `{"bad": "${TOKEN}` })
  t.ok(log.lines().length > 0, 'something was logged')
  t.notMatch(log.text(), TOKEN)
})

t.test('buildApp refuses an empty token', async (t) => {
  t.throws(() => buildApp({ jobs: new FakeJobs(), token: '', logger: quietLogger() }), /empty/)
})
