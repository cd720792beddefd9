import t from 'tap'
import { pino } from 'pino'
import { AgentCommands, type AgentMachine } from '../../../agent/ironic/agent-commands.js'
import { buildAgentServer } from '../../../agent/ironic/agent-server.js'
import { CommandLog } from '../../../agent/ironic/command-log.js'
import { errors } from '../../../agent/errors/install-error.js'

const TOKEN = 't'.repeat(43)
const logger = pino({ level: 'silent' })

/** The agent API over a machine whose install fails as a bad checksum would (the real install is tested against Debian's Ironic). */
function agent (): { app: ReturnType<typeof buildAgentServer>; erased: string[] } {
  const erased: string[] = []
  const machine: AgentMachine = {
    chooseDisk: async () => ({ path: '/dev/null-disk', why: 'Disk /dev/null-disk chosen by --disk.' }),
    erasableDisks: async () => ['/dev/a', '/dev/b'],
    eraseDisk: async (path) => { erased.push(path) },
    install: async () => { throw errors.checksumMismatch('sha256', 'a'.repeat(64), 'b'.repeat(64)) },
    powerOff: async () => {},
    reboot: async () => {},
    collectLogs: async () => Buffer.from('logs'),
    logger,
  }
  const log = new CommandLog()
  const app = buildAgentServer({ commands: new AgentCommands(log, machine), log, token: () => TOKEN, version: '1.2.3', startedAt: 0, logger })
  return { app, erased }
}

interface Answer {
  id: string
  command_status: string
  command_error: unknown
  command_result: Record<string, unknown>
  faultstring: string
  commands: unknown[]
  default_version: { id: string }
}
type Reply = Awaited<ReturnType<ReturnType<typeof buildAgentServer>['inject']>>
const json = (reply: Reply): Answer => reply.json<Answer>()

const post = async (app: ReturnType<typeof buildAgentServer>, query: string, body: unknown): Promise<Awaited<ReturnType<typeof app.inject>>> =>
  await app.inject({ method: 'POST', url: `/v1/commands/?${query}`, payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } })

t.test('commands need the agent token; errors carry faultstring', async (t) => {
  const { app } = agent()
  const none = await post(app, 'wait=true', { name: 'standby.sync', params: {} })
  t.equal(none.statusCode, 401)
  t.same(json(none), { faultcode: 'Client', faultstring: 'Token invalid.' })
  t.equal((await post(app, `wait=true&agent_token=${'u'.repeat(43)}`, { name: 'standby.sync', params: {} })).statusCode, 401)
  const ok = await post(app, `wait=true&agent_token=${TOKEN}`, { name: 'standby.sync', params: {} })
  t.equal(ok.statusCode, 200)
  t.equal(json(ok).command_status, 'SUCCEEDED')
  const noExtension = await post(app, `agent_token=${TOKEN}`, { name: 'nope.x', params: {} })
  t.same(noExtension.json(), { faultcode: 'Client', faultstring: 'Not found: Extension with id nope not found.' })
  t.equal((await post(app, `agent_token=${TOKEN}`, { name: 'standby.nope', params: {} })).statusCode, 400)
  t.equal((await post(app, `agent_token=${TOKEN}`, { name: 'sync', params: {} })).statusCode, 400)
  t.equal((await post(app, `agent_token=${TOKEN}`, { name: 'standby.sync' })).statusCode, 400, 'params missing')
  const notJson = await app.inject({ method: 'POST', url: `/v1/commands/?agent_token=${TOKEN}`, payload: '{', headers: { 'content-type': 'application/json' } })
  t.equal(notJson.statusCode, 400)
  t.type(json(notJson).faultstring, 'string')
  t.equal((await app.inject({ method: 'GET', url: '/v1/commands/' })).statusCode, 200, 'listing without a token (Debian\'s conductor sends none)')
  t.equal((await app.inject({ method: 'GET', url: '/v1/commands/?agent_token=wrong' })).statusCode, 401, 'a wrong token is refused')
  t.equal(json(await app.inject({ method: 'GET', url: '/nowhere' })).faultstring, 'Not found: The requested URL was not found.')
  t.equal(json(await app.inject({ method: 'GET', url: '/' })).default_version.id, 'v1')
  t.same(json(await app.inject({ method: 'GET', url: '/v1/status' })), { started_at: 0, version: '1.2.3' })
})

t.test('a failed write_image: FAILED with the install\'s result message as details; listing shows no parameters', async (t) => {
  const { app } = agent()
  const steps = await post(app, `wait=true&agent_token=${TOKEN}`, { name: 'deploy.get_deploy_steps', params: { node: {}, ports: [] } })
  const deploySteps = json(steps).command_result.deploy_steps as Record<string, Array<{ step: string }>>
  t.same(deploySteps.ByoiAgentHardwareManager?.map((s) => s.step), ['write_image', 'erase_devices_metadata'])
  const secret = 'Bearer do-not-show'
  const step = {
    interface: 'deploy', step: 'write_image', args: {
      image_info: { id: 'i', urls: ['http://127.0.0.1:1/x.raw'], disk_format: 'raw', image_download_headers: { Authorization: secret } },
    },
  }
  const started = await post(app, `wait=false&agent_token=${TOKEN}`, {
    name: 'deploy.execute_deploy_step', params: { step, node: { uuid: 'n' }, ports: [] },
  })
  t.equal(json(started).command_status, 'RUNNING')
  const id = json(started).id
  const done = await app.inject({ method: 'GET', url: `/v1/commands/${id}?wait=true` })
  t.equal(json(done).command_status, 'FAILED')
  t.same(json(done).command_error, {
    type: 'CHECKSUM_MISMATCH', code: 500, message: 'Deploy failed',
    details: `Bad sha256 for downloaded file, got: ${'a'.repeat(64)} while expecting ${'b'.repeat(64)}.`,
  })
  const listed = await app.inject({ method: 'GET', url: '/v1/commands/' })
  t.equal(json(listed).commands.length, 2)
  t.notMatch(listed.body, /do-not-show/, 'no header value in the listing')
  const uuids = await post(app, `wait=true&agent_token=${TOKEN}`, { name: 'standby.get_partition_uuids', params: {} })
  t.same(json(uuids).command_result, {}, 'nothing deployed: no uuids')
  const logs = await post(app, `wait=true&agent_token=${TOKEN}`, { name: 'log.collect_system_logs', params: {} })
  t.equal(Buffer.from(String(json(logs).command_result.system_logs), 'base64').toString(), 'logs')
})

t.test('clean steps: erase_devices_metadata on every erasable disk; an unknown step fails', async (t) => {
  const { app, erased } = agent()
  const steps = await post(app, `wait=true&agent_token=${TOKEN}`, { name: 'clean.get_clean_steps', params: { node: {}, ports: [] } })
  t.same((json(steps).command_result.clean_steps as Record<string, unknown>).ByoiAgentHardwareManager, [
    { step: 'erase_devices_metadata', priority: 99, interface: 'deploy', reboot_requested: false, abortable: true },
  ])
  const step = { interface: 'deploy', step: 'erase_devices_metadata', priority: 99 }
  const withArgs = { ...step, args: { secret: 'do-not-show' } }
  const run = await post(app, `wait=true&agent_token=${TOKEN}`, { name: 'clean.execute_clean_step', params: { step: withArgs, node: {}, ports: [] } })
  t.equal(json(run).command_status, 'SUCCEEDED')
  t.same(json(run).command_result, { clean_result: 'metadata erased on /dev/a, /dev/b', clean_step: step })
  t.same(erased, ['/dev/a', '/dev/b'])
  t.notMatch((await app.inject({ method: 'GET', url: '/v1/commands/' })).body, /do-not-show/, 'the step is echoed without its args')
  const unknownStep = { name: 'clean.execute_clean_step', params: { step: { step: 'erase_devices' }, node: {}, ports: [] } }
  const unknown = await post(app, `wait=true&agent_token=${TOKEN}`, unknownStep)
  t.equal(json(unknown).command_status, 'FAILED')
  t.match((json(unknown).command_error as { details: string }).details, /erase_devices is not one byoi-agent runs/)
})
