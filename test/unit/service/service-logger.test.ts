import t from 'tap'
import { Writable } from 'node:stream'
import { createServiceLogger, isLogLevel } from '../../../agent/service/service-logger.js'

t.test('redacts credentials wherever a whole object reaches the log', async (t) => {
  const out: string[] = []
  const destination = new Writable({ write (chunk: Buffer, _e, callback) { out.push(chunk.toString()); callback() } })
  const logger = createServiceLogger({ level: 'trace', destination })
  const job = logger.child({ jobId: 'j' })
  const headers = { authorization: 'Bearer tok-1', cookie: 'c-2', 'proxy-authorization': 'Basic p-3', accept: '*/*' }
  job.info({ req: { method: 'GET', headers } }, 'a request')
  job.info({ headers: { authorization: 'Basic h-4', 'x-auth-token': 'x-5' } }, 'headers')
  job.info({ options: { headers: { authorization: 'Bearer o-6' } } }, 'nested')
  job.info({
    httpHeaders: [{ name: 'Authorization', value: 'Basic v-7' }],
    request: { imageUrl: 'https://u:p-8@h/x', httpHeaders: [{ name: 'a', value: 'v-9' }] },
  }, 'payload')
  job.info({ token: 't-10', password: 'p-11', config: { token: 't-12', authorization: 'a-13' } }, 'fields')
  const text = out.join('')
  for (const secret of ['tok-1', 'c-2', 'p-3', 'h-4', 'x-5', 'o-6', 'v-7', 'p-8', 'v-9', 't-10', 'p-11', 't-12', 'a-13']) t.notMatch(text, secret, secret)
  t.match(text, /"accept":"\*\/\*"/, 'other headers stay')
  t.match(text, /"jobId":"j"/)
  t.equal((text.match(/\[REDACTED\]/g) ?? []).length >= 13, true)
})

t.test('log levels', async (t) => {
  t.ok(isLogLevel('info'))
  t.notOk(isLogLevel('loud'))
})
