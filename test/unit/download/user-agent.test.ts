import { readFile } from 'node:fs/promises'
import t from 'tap'
import { agentVersion, userAgent } from '../../../agent/download/user-agent.js'

t.test('the User-Agent carries the version of package.json', async (t) => {
  const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
  t.equal(agentVersion, pkg.version)
  t.equal(userAgent, `byoi-agent/${pkg.version}`)
})
