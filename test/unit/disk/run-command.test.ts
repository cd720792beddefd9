import t from 'tap'
import { runCommand } from '../../../agent/disk/run-command.js'

t.test('a command that exits 0 resolves', async (t) => {
  await t.resolves(runCommand('true', [], 5000))
})

t.test('a failing command rejects with its standard error on one line, the child_process error as cause', async (t) => {
  const err = await runCommand('sh', ['-c', 'echo "first line" >&2; echo "second line" >&2; exit 3'], 5000).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof Error)
  t.equal((err as Error).message, 'first line second line')
  t.match((err as Error).cause, { code: 3 })
})

t.test('a command that cannot be started: COMMAND not found', async (t) => {
  await t.rejects(runCommand('/nonexistent/mount', ['-o', 'ro'], 5000), { message: '/nonexistent/mount not found' })
})

t.test('a silent failure says how it ended', async (t) => {
  await t.rejects(runCommand('false', [], 5000), { message: /Command failed: false/ })
})
