/**
 * `--disk hints:…` and `serve --disk auto` with disk groups, through runCli over a fake /sys/block
 * (test/helpers/fake-sysfs, the CLI's `blockDevices` sources), and one bad hint through the real
 * binary (main.ts). An install that gets as far as opening its disk fails there (DISK_UNAVAILABLE),
 * before any download or write, which proves which disk it chose.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { EXIT_INSTALL_FAILED, EXIT_OK, EXIT_USAGE } from '../../agent/cli.js'
import type { InstallStatus } from '../../agent/service/job-status.js'
import { tempDir } from '../helpers/disk-files.js'
import { fakeServer } from '../helpers/fake-sysfs.js'
import { cliWithIo, serveCli, type ServeRun } from '../helpers/run-cli.js'
import { AUTH, TOKEN, waitFor } from '../unit/api/api-test-helpers.js'

const tmp = tempDir()
t.teardown(tmp.remove)
const GiB = 1024 ** 3
const tokenFile = join(tmp.path, 'token')
writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })

const sources = fakeServer(join(tmp.path, 'sys'))

async function cli (args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return await cliWithIo(args, { blockDevices: sources }, stdin)
}

/** Nothing listens there: a download would fail, but preflight (opening the disk) comes first. */
const IMAGE_URL = 'http://127.0.0.1:9/never.raw'
const reinstall = (storage?: unknown): string => JSON.stringify({
  operatingSystem: 'byoi_64', customizations: { imageURL: IMAGE_URL, imageType: 'raw' }, ...(storage === undefined ? {} : { storage }),
})
const stateDir = join(tmp.path, 'install-state')

t.test('install --disk hints: the one free disk that matches; its why in the notes, before the install opens it', async (t) => {
  const run = await cli(['install', '--payload', '-', '--disk', 'hints:serial=s64f2,size>=800', '--json', '--state-dir', stateDir], reinstall())
  t.equal(run.code, EXIT_INSTALL_FAILED)
  const outcome = JSON.parse(run.stdout) as { code: string; message: string; notes: string[] }
  t.equal(outcome.code, 'DISK_UNAVAILABLE')
  t.match(outcome.message, /^Could not open disk \/dev\/nvme91n1: /)
  t.same(outcome.notes, ['/dev/nvme91n1 chosen by root device hints serial=s64f2, size>=800 (size 894 GiB, model SAMSUNG MZQL2960, serial S64F2)'])
  t.match(run.stderr, /\/dev\/nvme91n1 chosen by root device hints/, 'said on standard error as it happens')

  // By WWN (from sysfs's naa. wwid) with Ironic's JSON form.
  const byWwn = await cli(['install', '--payload', '-', '--disk', 'hints:{"wwn": "0x5000CCA0AAAA0002"}', '--state-dir', stateDir], reinstall())
  t.match(byWwn.stdout, /^Could not open disk \/dev\/sdzz: /)
})

t.test('install --disk hints: none, two, or only a disk in use: refused with DISK_NOT_CHOSEN, each disk said', async (t) => {
  const none = await cli(['install', '--payload', '-', '--disk', 'hints:model=intel', '--json', '--state-dir', stateDir], reinstall())
  t.equal(none.code, EXIT_INSTALL_FAILED)
  t.same(JSON.parse(none.stdout), {
    status: 'error',
    code: 'DISK_NOT_CHOSEN',
    message: 'No disk to install on: no disk matches the root device hints model=intel: nvme90n1: model is "SAMSUNG MZQL2960"; ' +
      'nvme91n1: model is "SAMSUNG MZQL2960"; sdzy: model is "HGST"; sdzz: model is "HGST"; not considered: sdzx (removable).',
    bytes: null,
    digest: null,
    notes: [],
  })
  const two = await cli(['install', '--payload', '-', '--disk', 'hints:rotational=true', '--state-dir', stateDir], reinstall())
  t.match(two.stdout, /^No disk to install on: 2 disks match the root device hints rotational=true: sdzy \(size 3726 GiB, model HGST\); sdzz/)
  const busy = await cli(['install', '--payload', '-', '--disk', 'hints:serial=S64F1', '--state-dir', stateDir], reinstall())
  t.match(busy.stdout, 'No disk to install on: no disk that is free matches the root device hints serial=S64F1 (a disk in use is never chosen): ' +
    'nvme90n1 matches but is in use: partition nvme90n1p1 mounted at /;')
})

t.test('install: a bad hint or --disk auto is bad usage; a fixed disk refuses diskGroupId 2', async (t) => {
  const bad = await cli(['install', '--payload', '-', '--disk', 'hints:colour=red', '--state-dir', stateDir], reinstall())
  t.equal(bad.code, EXIT_USAGE)
  t.match(bad.stderr, /^Bad --disk hints:colour=red: unknown root device hint "colour" \(the hints are size, model/)
  const auto = await cli(['install', '--payload', '-', '--disk', 'auto', '--state-dir', stateDir], reinstall())
  t.equal(auto.code, EXIT_USAGE)
  t.match(auto.stderr, /^--disk auto is for serve/)
  const disk = join(tmp.path, 'file.img')
  writeFileSync(disk, '')
  const group = await cli(['install', '--payload', '-', '--disk', disk, '--state-dir', stateDir], reinstall([{ diskGroupId: 2 }]))
  t.equal(group.code, EXIT_INSTALL_FAILED)
  t.equal(group.stdout, `Bad storage[0].diskGroupId, expected: 1 (the agent installs on ${disk}, the disk it was given; ` +
    'disk group 2 is chosen only under serve --disk auto).\n')
})

t.test('a bad hint through the real binary: exit 2, the hint named', async (t) => {
  const main = fileURLToPath(new URL('../../agent/main.ts', import.meta.url))
  const run = spawnSync(process.execPath, [...process.execArgv, main, 'install', '--payload', '-', '--disk', 'hints:size>=big'], {
    input: reinstall(), encoding: 'utf8', timeout: 120_000,
  })
  t.equal(run.status, EXIT_USAGE)
  t.match(run.stderr, /^Bad --disk hints:size>=big: root device hint size is not an integer value: ">= big"/)
})

function serve (args: string[]): ServeRun {
  return serveCli(['--listen', '127.0.0.1:0', '--token-file', tokenFile, ...args], { blockDevices: sources })
}

async function installAndWait (url: string, body: string): Promise<InstallStatus> {
  // The last job's result shows a moment before the runner takes a new one (its state saved first): BUSY is asked again.
  await waitFor('the install accepted', async () => {
    const started = await request(`${url}/install/start`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body })
    if (started.statusCode === 409) return await started.body.dump().then(() => false)
    if (started.statusCode !== 202) throw new Error(`${started.statusCode}: ${await started.body.text()}`)
    await started.body.dump()
    return true
  })
  let status: InstallStatus | undefined
  await waitFor('the install ended', async () => {
    status = await (await request(`${url}/install/status`, { headers: AUTH })).body.json() as InstallStatus
    return status.state !== 'running'
  }, 60_000)
  return status as InstallStatus
}

t.test('serve --disk auto: the payload\'s disk group chooses each install\'s disk; a group that does not exist is DISK_NOT_CHOSEN', async (t) => {
  const run = serve(['--disk', 'auto', '--state-dir', join(tmp.path, 'serve-auto')])
  const { url } = await run.service
  t.teardown(run.stop)
  t.match(run.stdout(), /disk \/dev\/nvme91n1 \(auto\)\n$/, 'at start, the first disk not in use')

  const group2 = await installAndWait(url, reinstall([{ diskGroupId: 2 }]))
  t.match(group2, {
    state: 'error',
    disk: { path: '/dev/sdzy', auto: true, sizeBytes: 3726 * GiB, model: 'HGST' },
    result: { code: 'DISK_UNAVAILABLE', message: /^Could not open disk \/dev\/sdzy: / },
  })
  t.equal(group2.notes[0], '/dev/sdzy chosen as the first free disk of disk group 2 (HDD, 3726 GiB: sdzy, sdzz)')

  const group1 = await installAndWait(url, reinstall([{ diskGroupId: 1 }]))
  t.equal(group1.notes[0], '/dev/nvme91n1 chosen as the first free disk of disk group 1 (NVMe, 894 GiB: nvme90n1, nvme91n1); ' +
    'nvme90n1 is in use: partition nvme90n1p1 mounted at /')

  const none = await installAndWait(url, reinstall())
  t.equal(none.notes[0], '/dev/nvme91n1 chosen by --disk auto, the first disk not in use; nvme90n1 is in use: partition nvme90n1p1 mounted at /')

  const missing = await installAndWait(url, reinstall([{ diskGroupId: 3 }]))
  t.match(missing, {
    state: 'error',
    result: {
      code: 'DISK_NOT_CHOSEN',
      message: 'No disk to install on: disk group 3 does not exist: this server has group 1 (NVMe, 894 GiB: nvme90n1, nvme91n1), ' +
        'group 2 (HDD, 3726 GiB: sdzy, sdzz).',
    },
  })
  t.match(run.stderr(), /"msg":"\/dev\/sdzy chosen as the first free disk of disk group 2/, 'in the log')
  run.stop()
  t.equal(await run.code, EXIT_OK)
})

t.test('serve --disk hints: chosen at start, said on the listening line; diskGroupId 2 refused (400)', async (t) => {
  const run = serve(['--disk', 'hints:wwn=0x5000cca0aaaa0001', '--state-dir', join(tmp.path, 'serve-hints')])
  const { url } = await run.service
  t.teardown(run.stop)
  t.match(run.stdout(), /disk \/dev\/sdzy \(hints\)\n$/)
  const refused = await request(`${url}/install/start`, {
    method: 'POST', headers: { ...AUTH, 'content-type': 'application/json' }, body: reinstall([{ diskGroupId: 2 }]),
  })
  t.equal(refused.statusCode, 400)
  t.match(await refused.body.json(), { code: 'PAYLOAD_BAD_FIELD', message: /^Bad storage\[0\]\.diskGroupId, expected: 1 \(the agent installs on \/dev\/sdzy/ })
  const status = await installAndWait(url, reinstall([{ diskGroupId: 1 }]))
  t.equal(status.notes[0], '/dev/sdzy chosen by root device hints wwn=0x5000cca0aaaa0001 (size 3726 GiB, model HGST)')
  run.stop()
  t.equal(await run.code, EXIT_OK)

  const none = serve(['--disk', 'hints:serial=nope', '--state-dir', join(tmp.path, 'serve-hints-none')])
  t.equal(await none.code, EXIT_INSTALL_FAILED)
  t.match(none.stderr(), /--disk hints:serial=nope: No disk to install on: no disk matches the root device hints serial=nope: nvme90n1: serial is "S64F1"/)
})
