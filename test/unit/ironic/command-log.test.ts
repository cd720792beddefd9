import t from 'tap'
import { AgentCommandError, AgentRequestError, CommandLog, type CommandResult } from '../../../agent/ironic/command-log.js'

t.test('sync commands answer their final result; strings are prefixed as ironic-python-agent does', async (t) => {
  const log = new CommandLog()
  const result = await log.runSync('get_partition_uuids', async () => ({ 'root uuid': '0x1234' }))
  t.equal(result.command_status, 'SUCCEEDED')
  t.same(result.command_result, { 'root uuid': '0x1234' })
  t.equal(result.command_error, null)
  const text = await log.runSync('sync', async () => 'done')
  t.same(text.command_result, { result: 'sync: done' })
  t.same(Object.keys(text).sort(), ['command_error', 'command_name', 'command_result', 'command_status', 'id'], 'no command_params: they hold secrets')
  t.equal(log.list().length, 2)
})

t.test('an async command is RUNNING until it ends; another one meanwhile is "Agent is busy" (409)', async (t) => {
  const ended: CommandResult[] = []
  const log = new CommandLog((result) => { ended.push(result) })
  let finish: (() => void) | undefined
  const { result, done } = log.runAsync('execute_deploy_step', async () => await new Promise<string>((resolve) => { finish = () => { resolve('written') } }))
  t.equal(result.command_status, 'RUNNING')
  t.equal(log.busyWith()?.id, result.id)
  await t.rejects(log.runSync('get_partition_uuids', async () => ({})), new AgentRequestError(409, 'Agent is busy: executing command execute_deploy_step'))
  t.equal(log.list().length, 1, 'the refused command left no result')
  finish?.()
  await done
  t.equal(log.get(result.id)?.command_status, 'SUCCEEDED')
  t.same(log.get(result.id)?.command_result, { result: 'execute_deploy_step: written' })
  t.equal(ended.length, 1, 'its end was told (the agent heartbeats then)')
  t.equal(log.busyWith(), undefined)
})

t.test('failures carry the error Ironic shows: details are the result message', async (t) => {
  const log = new CommandLog()
  const failed = log.runAsync('prepare_image', async () => {
    throw new AgentCommandError('CHECKSUM_MISMATCH', 'Bad sha256 for downloaded file, got: a while expecting b.', 500, 'Deploy failed')
  })
  await failed.done
  t.same(log.get(failed.result.id)?.command_error, {
    type: 'CHECKSUM_MISMATCH', code: 500, message: 'Deploy failed', details: 'Bad sha256 for downloaded file, got: a while expecting b.',
  })
  const plain = await log.runSync('sync', async () => { throw new Error('EIO') })
  t.same(plain.command_error, { type: 'CommandExecutionError', code: 500, message: 'Command execution failed', details: 'EIO' })
  t.equal(plain.command_status, 'FAILED')
})

t.test('wait and abortAll', async (t) => {
  const log = new CommandLog()
  const { result } = log.runAsync('power_off', async (signal) => await new Promise((resolve, reject) => {
    signal.addEventListener('abort', () => { reject(signal.reason as Error) })
  }))
  const waited = log.wait(result.id)
  await log.abortAll()
  t.equal((await waited)?.command_status, 'FAILED')
  t.equal(await log.wait('no-such-id'), undefined)
})
