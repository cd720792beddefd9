/**
 * test/helpers/ironic-server.ts against the real Ironic (Debian's 21.4.x), without any agent: a node with a port reaches
 * `available`, a deploy with a JSON config drive waits for its agent, the agent's lookup (API 1.68) finds it and issues a
 * token, a heartbeat is accepted; then Ironic fails the deploy the two ways an absent agent makes it: a callback_url
 * where nothing listens ("Connection to agent failed" after its tries), and no heartbeat at all (the callback timeout).
 * Finally stop(): the process gone, its directory removed.
 */
import t from 'tap'
import { existsSync } from 'node:fs'
import { makeImage, sha, startImageServer } from '../helpers/image-server.js'
import { schemaTemplate, startIronic, type Json } from '../helpers/ironic-server.js'
import { freePort } from '../helpers/free-port.js'
import { alive } from '../helpers/process-alive.js'

t.setTimeout(120_000)



t.test('a real Ironic: node, deploy, lookup, heartbeat, and the deploy failed by an absent agent', async (t) => {
  const image = makeImage(1024 * 1024)
  const images = await startImageServer({ image })
  t.teardown(images.close)
  const template = await schemaTemplate()
  t.comment(template.createdMs === null ? `schema template cached: ${template.path}` : `schema template made in ${Math.round(template.createdMs)} ms`)
  const started = performance.now()
  // 5 s for the node that never hears from its agent; the other one fails on its first heartbeat, well before.
  const ironic = await startIronic({ callbackTimeoutS: 5 })
  t.teardown(ironic.stop)
  t.comment(`Ironic answered GET /v1 in ${Math.round(performance.now() - started)} ms`)
  t.match(ironic.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.ok(alive(ironic.pid), 'running')

  const instanceInfo: Json = {
    image_source: images.url('/disk.raw'),
    image_os_hash_algo: 'sha256',
    image_os_hash_value: sha('sha256', image),
    image_disk_format: 'raw',
    root_gb: 1,
  }
  const configdrive = { meta_data: { uuid: 'c0ffee00-0000-4000-8000-000000000001', hostname: 'node-a' }, user_data: '#cloud-config\n' }
  const macA = '52:54:00:12:34:56'
  const macB = '52:54:00:12:34:57'
  const [a, b] = await Promise.all([
    ironic.createNode({ name: 'node-a', macs: [macA], instanceInfo }),
    ironic.createNode({ name: 'node-b', macs: [macB], instanceInfo }),
  ])
  const nodeA = await ironic.node(a)
  t.match(nodeA, { provision_state: 'available', driver: 'byoi-fake-hardware', management_interface: 'noop', deploy_interface: 'direct' })
  const ports = (await ironic.request('GET', `/v1/nodes/${a}/ports`)).json?.ports as Json[]
  t.same(ports.map((p) => p.address), [macA], 'one port with the MAC')

  // Before a deploy, the node is not waiting for an agent: the lookup does not find it.
  t.equal((await ironic.lookup([macA])).status, 404, 'lookup before the deploy: 404')

  await Promise.all([ironic.deploy(a, configdrive), ironic.deploy(b, configdrive)])
  await Promise.all([ironic.waitForState(a, ['wait call-back'], 20_000), ironic.waitForState(b, ['wait call-back'], 20_000)])
  t.equal(images.requests.length, 4, 'the conductor asked the image URL twice per deploy (HEADs) before waiting')
  t.ok(images.requests.every((h) => /^python-requests\//.test(h['user-agent'] ?? '')), 'with python-requests')

  const lookup = await ironic.lookup([macA])
  t.equal(lookup.status, 200, 'lookup at API 1.68')
  const found = lookup.json?.node as Json
  const config = lookup.json?.config as Json
  t.equal(found.uuid, a, 'the node of that MAC')
  t.match(found.instance_info, { image_source: images.url('/disk.raw'), configdrive: '******' }, 'instance_info, the config drive hidden')
  t.match(config, { agent_token: /^.{20,}$/, agent_token_required: true, heartbeat_timeout: Number })
  const token = String(config.agent_token)
  t.equal(((await ironic.lookup([macA])).json?.config as Json).agent_token, '******', 'a second lookup: the token is not issued again')
  t.equal((await ironic.request('GET', `/v1/lookup?addresses=${macA}`, { apiVersion: null })).status, 404,
    'lookup without the API version header: 404')

  t.equal((await ironic.heartbeat(a, { callback_url: 'http://127.0.0.1:1', agent_token: 'wrong' })).status, 400, 'a wrong token: 400')
  const beat = await ironic.heartbeat(a, { callback_url: `http://127.0.0.1:${await freePort()}`, agent_token: token })
  t.equal(beat.status, 202, 'heartbeat with the token: 202')

  // The conductor calls the agent back (deploy.get_deploy_steps), finds nothing listening, tries again, and gives up.
  const failedA = await ironic.waitForState(a, ['deploy failed'], 20_000)
  t.match(failedA.last_error, /Connection to agent failed/, 'node-a: deploy failed, the agent unreachable')
  t.comment(`node-a last_error: ${String(failedA.last_error)}`)
  const tries = ironic.logText().split('\n').filter((l) => l.includes(`Executing agent command deploy.get_deploy_steps for node ${a}`))
  t.equal(tries.length, 3, 'three tries ([agent] max_command_attempts), none after')
  t.equal((await ironic.heartbeat(a, { callback_url: 'http://127.0.0.1:1', agent_token: token })).status, 400,
    'a heartbeat after the failure: 400 (the token wiped)')

  // node-b never heard from its agent: the callback timeout fails it.
  const failedB = await ironic.waitForState(b, ['deploy failed'], 20_000)
  t.match(failedB.last_error, /Timeout reached while waiting for callback/, 'node-b: deploy failed at the callback timeout')
  t.comment(`node-b last_error: ${String(failedB.last_error)}`)

  // Out of `deploy failed`: undeploy (no cleaning here) makes the node available again.
  await ironic.undeploy(a)
  t.match(await ironic.waitForState(a, ['available'], 20_000), { provision_state: 'available', last_error: null })

  const pid = ironic.pid
  const dir = ironic.dir
  await ironic.stop()
  t.notOk(alive(pid), 'stop(): the process is gone')
  t.notOk(existsSync(dir), 'its directory removed')
  t.match(ironic.logText(), /Successfully started conductor/, 'the log kept after stop()')
})
