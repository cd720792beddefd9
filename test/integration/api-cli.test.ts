/**
 * `byoi-agent serve` through runCli: its usage errors, --disk auto over a fake /sys/block, the
 * token file, and the shutdown on the signal.
 */
import t from 'tap'
import { chmodSync, chownSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { request } from 'undici'
import { EXIT_INSTALL_FAILED, EXIT_OK, EXIT_USAGE, runCli } from '../../agent/cli.js'
import type { BlockDeviceSources } from '../../agent/disk/auto-disk.js'
import type { InstallStatus } from '../../agent/service/job-status.js'
import { tempDir } from '../helpers/disk-files.js'
import { serveCli, type ServeRun } from '../helpers/run-cli.js'
import { AUTH, TOKEN } from '../unit/api/api-test-helpers.js'

const tmp = tempDir()
t.teardown(tmp.remove)
const tokenFile = join(tmp.path, 'token')
writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })

function serve (args: string[], options: { blockDevices?: BlockDeviceSources } = {}): ServeRun {
  return serveCli(args, options.blockDevices === undefined ? {} : { blockDevices: options.blockDevices })
}

const base = (stateDir: string): string[] => ['--listen', '127.0.0.1:0', '--token-file', tokenFile, '--state-dir', join(tmp.path, stateDir)]

t.test('bad usage: exit 2 and the usage', async (t) => {
  const shortToken = join(tmp.path, 'short')
  writeFileSync(shortToken, 'short\n')
  const spaced = join(tmp.path, 'spaced')
  writeFileSync(spaced, 'a token with spaces in it\n')
  const cases: string[][] = [
    ['--disk', 'x', '--token-file', tokenFile],
    ['--listen', '127.0.0.1', '--disk', 'x', '--token-file', tokenFile],
    ['--listen', '127.0.0.1:99999', '--disk', 'x', '--token-file', tokenFile],
    ['--listen', 'nohost', '--disk', 'x', '--token-file', tokenFile],
    ['--listen', '127.0.0.1:0', '--token-file', tokenFile],
    ['--listen', '127.0.0.1:0', '--disk', 'x'],
    ['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', join(tmp.path, 'missing')],
    ['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', shortToken],
    ['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', spaced],
    ['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', tokenFile, '--tls-cert', 'c.pem'],
    ['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', tokenFile, '--report-url', 'ftp://x/y'],
    ['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', tokenFile, '--memory-limit', 'lots'],
    ['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', tokenFile, '--log-level', 'loud'],
    ['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', tokenFile, '--json'],
    ['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', tokenFile, '--payload', 'p.json'],
  ]
  for (const args of cases) {
    const run = serve(args)
    t.equal(await run.code, EXIT_USAGE, args.join(' '))
    t.match(run.stderr(), /Usage:/)
    t.equal(run.stdout(), '')
  }
  const install = serve(['--listen', '127.0.0.1:0'])
  t.equal(await install.code, EXIT_USAGE)
  const run = serve(['--listen', '127.0.0.1:0', '--disk', 'x', '--token-file', shortToken])
  await run.code
  t.match(run.stderr(), /16 characters at least/)
  t.notMatch(run.stderr(), 'short\n', 'the token is not echoed')
})

t.test('install refuses the serve options', async (t) => {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let err = ''
  stderr.on('data', (c: Buffer) => { err += c.toString() })
  const code = await runCli(['install', '--payload', 'p', '--disk', 'd', '--listen', '1:2'], { stdout, stderr, stdin: Readable.from(['']) })
  t.equal(code, EXIT_USAGE)
  t.match(err, /--listen is not an option of install/)
  const help = new PassThrough()
  let text = ''
  help.on('data', (c: Buffer) => { text += c.toString() })
  t.equal(await runCli(['--help'], { stdout: help, stderr, stdin: Readable.from(['']) }), EXIT_OK)
  t.match(text, /byoi-agent serve --listen HOST:PORT --disk PATH\|auto\|hints:HINTS --token-file FILE/)
})

/**
 * A /sys/block with a loop device, a USB stick, the disk the system runs from (its partition
 * mounted at /) and two free disks; its mount table and swaps beside it.
 */
function fakeSysBlock (root: string): BlockDeviceSources {
  const block = join(root, 'block')
  mkdirSync(block, { recursive: true })
  const add = (name: string, under: string, attrs: Record<string, string>): void => {
    const dir = join(root, 'devices', under, 'block', name)
    mkdirSync(join(dir, 'device'), { recursive: true })
    for (const [file, value] of Object.entries(attrs)) {
      mkdirSync(dirname(join(dir, file)), { recursive: true })
      writeFileSync(join(dir, file), `${value}\n`)
    }
    symlinkSync(join('..', 'devices', under, 'block', name), join(block, name))
  }
  add('loop0', 'virtual', { removable: '0', size: '2048', ro: '0' })
  add('sda', 'pci0000:00/usb1', { removable: '1', size: '4096', ro: '0' })
  add('sdc', 'pci0000:00/ata3', { removable: '0', size: '8192', ro: '0' })
  add('sdb', 'pci0000:00/ata2', { removable: '0', size: '4194304', ro: '0', 'device/model': 'DISK B' })
  add('nvme0n1', 'pci0000:00/nvme0', { removable: '0', size: '4194304', ro: '0', dev: '259:0', 'nvme0n1p1/partition': '1', 'nvme0n1p1/dev': '259:1' })
  const mountInfoPath = join(root, 'mountinfo')
  writeFileSync(mountInfoPath, '27 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n')
  const swapsPath = join(root, 'swaps')
  writeFileSync(swapsPath, 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n')
  return { sysBlockDir: block, mountInfoPath, swapsPath }
}

t.test('--disk auto: says which disk, in the log and the status; SIGTERM stops it', async (t) => {
  const run = serve([...base('auto-state'), '--disk', 'auto'], { blockDevices: fakeSysBlock(join(tmp.path, 'sys')) })
  const service = await run.service
  t.match(run.stdout(), /^byoi-agent listening on http:\/\/127\.0\.0\.1:\d+, disk \/dev\/sdb \(auto\)\n$/)
  t.match(run.stderr(), /"msg":"--disk auto chose \/dev\/sdb"/)
  t.match(run.stderr(), /"name":"sda","reason":"removable"/)
  t.match(run.stderr(), /"name":"nvme0n1","reason":"in use: partition nvme0n1p1 mounted at \/"/, 'the disk the system runs from is passed over')
  const status = await (await request(`${service.url}/install/status`, { headers: AUTH })).body.json() as InstallStatus
  t.same(status.disk, { path: '/dev/sdb', auto: true, sizeBytes: 4194304 * 512, model: 'DISK B' })
  run.stop()
  t.equal(await run.code, EXIT_OK)
  t.match(run.stderr(), /"msg":"stopped"/)
  t.notMatch(run.stderr(), TOKEN)
  await t.rejects(request(`${service.url}/health`), 'the port is closed')
})

t.test('--disk auto with no disk: exit 1, saying why each device was passed over', async (t) => {
  const root = join(tmp.path, 'sys-empty')
  const block = join(root, 'block')
  mkdirSync(join(root, 'devices', 'virtual', 'block', 'zram0'), { recursive: true })
  writeFileSync(join(root, 'devices', 'virtual', 'block', 'zram0', 'size'), '100\n')
  mkdirSync(block, { recursive: true })
  symlinkSync(join('..', 'devices', 'virtual', 'block', 'zram0'), join(block, 'zram0'))
  const mountInfoPath = join(root, 'mountinfo')
  writeFileSync(mountInfoPath, '')
  const run = serve([...base('none-state'), '--disk', 'auto'], { blockDevices: { sysBlockDir: block, mountInfoPath, swapsPath: join(root, 'no-swaps') } })
  t.equal(await run.code, EXIT_INSTALL_FAILED)
  t.match(run.stderr(), /No disk found for --disk auto \(zram0: not a disk/)
  // No mount table: nothing can be known to be free, nothing is chosen.
  const blind = serve([...base('blind-state'), '--disk', 'auto'], { blockDevices: { sysBlockDir: block, mountInfoPath: join(root, 'no-mountinfo') } })
  t.equal(await blind.code, EXIT_INSTALL_FAILED)
  t.match(blind.stderr(), /No disk found for --disk auto \(cannot list them: cannot read .*no-mountinfo to tell which disks are mounted/)
})

t.test('a port in use: exit 1', async (t) => {
  const first = serve([...base('port-1'), '--disk', join(tmp.path, 'd.img')])
  const service = await first.service
  const port = new URL(service.url).port
  const second = serve(['--listen', `127.0.0.1:${port}`, '--token-file', tokenFile, '--state-dir', join(tmp.path, 'port-2'), '--disk', join(tmp.path, 'd.img')])
  t.equal(await second.code, EXIT_INSTALL_FAILED)
  t.match(second.stderr(), /Cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/)
  first.stop()
  t.equal(await first.code, EXIT_OK)
})

t.test('--report-url with a malformed %-escape in its user info: a usage error naming --report-url, no stack trace', async (t) => {
  const run = serve([...base('bad-report-url'), '--disk', join(tmp.path, 'd.img'), '--report-url', 'http://us%zzer:pw-secret-789@127.0.0.1/r'])
  t.equal(await run.code, EXIT_USAGE)
  t.match(run.stderr(), /^Bad --report-url http:\/\/127\.0\.0\.1\/r: /)
  t.match(run.stderr(), /Usage:/)
  t.notMatch(run.stderr(), /URI malformed|"stack"|pw-secret-789/, 'no stack trace, no password')
  t.equal(run.stdout(), '')
})

t.test('an existing --state-dir open to others is made 0700; one owned by another user is refused', async (t) => {
  const open = join(tmp.path, 'open-state')
  mkdirSync(open)
  chmodSync(open, 0o777)
  const run = serve(['--listen', '127.0.0.1:0', '--token-file', tokenFile, '--state-dir', open, '--disk', join(tmp.path, 'd.img')])
  await run.service
  t.equal(statSync(open).mode & 0o777, 0o700, 'mode 0700')
  run.stop()
  t.equal(await run.code, EXIT_OK)
  if (process.getuid?.() !== 0) return
  const foreign = join(tmp.path, 'foreign-state')
  mkdirSync(foreign, { mode: 0o700 })
  chownSync(foreign, 65534, 65534)
  const refused = serve(['--listen', '127.0.0.1:0', '--token-file', tokenFile, '--state-dir', foreign, '--disk', join(tmp.path, 'd.img')])
  t.equal(await refused.code, EXIT_USAGE)
  t.match(refused.stderr(), /^Bad --state-dir .*foreign-state: owned by uid 65534, not by this agent \(uid 0\)/)
})

t.test('a token file readable by others: a warning on stderr, never the token', async (t) => {
  const loose = join(tmp.path, 'loose-token')
  writeFileSync(loose, `${TOKEN}\n`, { mode: 0o644 })
  chmodSync(loose, 0o644)
  const run = serve(['--listen', '127.0.0.1:0', '--token-file', loose, '--state-dir', join(tmp.path, 'loose-state'), '--disk', join(tmp.path, 'd.img')])
  await run.service
  run.stop()
  t.equal(await run.code, EXIT_OK)
  t.match(run.stderr(), new RegExp(`Warning: --token-file ${loose} is accessible by group or others \\(mode 0644\\)`))
  t.notMatch(run.stderr(), TOKEN)
  const tight = join(tmp.path, 'tight-token')
  writeFileSync(tight, `${TOKEN}\n`, { mode: 0o600 })
  const quiet = serve(['--listen', '127.0.0.1:0', '--token-file', tight, '--state-dir', join(tmp.path, 'tight-state'), '--disk', join(tmp.path, 'd.img')])
  await quiet.service
  quiet.stop()
  t.equal(await quiet.code, EXIT_OK)
  t.notMatch(quiet.stderr(), /Warning: --token-file/)
})

t.test('--disk "": a usage error (exit 2) for serve', async (t) => {
  const run = serve([...base('empty-disk'), '--disk', ''])
  t.equal(await run.code, EXIT_USAGE)
  t.match(run.stderr(), /^Bad --disk: expected a path/)
})
