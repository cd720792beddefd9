// make demo, the part after the set-up: one real install, shown. The rescue image boots in a QEMU
// VM (TCG) with an empty 2 GiB virtio disk; the test OS image (Debian + cloud-init) is served on
// 127.0.0.1 behind Basic auth; the install/start payload goes to the agent's API, whose events are
// drawn live; the disk is checked from the host; then the installed disk boots by itself and the
// system greets with the motd its user data wrote. The same code as `make e2e` (test/e2e/).
// Usage: node dist/scripts/demo-vm.js
import { execFileSync } from 'node:child_process'
import type { AgentEvent } from '../test/e2e/agent-client.js'
import { MOTD_LINE } from '../test/e2e/boot-checks.js'
import type { E2eCase } from '../test/e2e/cases.js'
import { runCase } from '../test/e2e/run-case.js'

const demo: E2eCase = {
  name: 'demo',
  summary: 'the demo: raw test OS image onto a virtio disk, then booted with SeaBIOS',
  image: 'test-os.raw',
  imageType: 'raw',
  bus: 'virtio',
  diskMiB: 2048,
  prefill: 'random-head',
  expect: { disk: 'installed', code: 'INSTALLED', boots: ['bios'] },
}

const live = process.stdout.isTTY
const bold = (text: string): string => (live ? `\x1b[1m${text}\x1b[0m` : text)
const say = (text: string): void => { clearBar(); console.log(`\n${bold(`== ${text}`)}`) }
let barDrawn = false
function clearBar (): void {
  if (barDrawn) process.stdout.write('\r\x1b[K')
  barDrawn = false
}

const MiB = 1024 * 1024
let lastPlainTenth = -1
function drawProgress (event: Extract<AgentEvent, { type: 'progress' }>['data']): void {
  const total = event.totalBytes ?? 0
  const fraction = total > 0 ? Math.min(1, event.bytes / total) : 0
  const text = `${event.step.padEnd(8)} ${(fraction * 100).toFixed(0).padStart(3)} %  ` +
    `${String(Math.round(event.bytes / MiB)).padStart(5)}/${Math.round(total / MiB)} MiB  ` +
    `${(event.bytesPerSecond / MiB).toFixed(0).padStart(4)} MiB/s  ETA ${event.etaSeconds ?? '?'} s`
  if (live) {
    const width = 30
    const filled = Math.round(fraction * width)
    process.stdout.write(`\r\x1b[K  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}`)
    barDrawn = true
    return
  }
  const tenth = Math.floor(fraction * 10)
  if (tenth !== lastPlainTenth) {
    lastPlainTenth = tenth
    console.log(`  ${text}`)
  }
}

/** Console lines worth showing while the installed system boots: boot loader, kernel, cloud-init, login, motd. */
const BOOT_LINES = /SYSLINUX|Loading \/boot|Welcome to GRUB|Linux version|Cloud-init v\.|BYOI-E2E-MARKER|login:|root@|Hi, sounds|Debian GNU\/Linux 12/

console.log(bold('byoi-agent demo: a real install in a QEMU VM (TCG, no KVM: a few minutes)'))
const report = await runCase(demo, {
  phase: (text) => say(text),
  rescueConsole: (line) => {
    if (/byoi-rescue:|byoi-agent listening/.test(line)) { clearBar(); console.log(`  console| ${line.trim()}`) }
  },
  event: (event) => {
    if (event.type === 'step' && event.data.status !== 'todo') {
      clearBar()
      lastPlainTenth = -1
      console.log(`  step ${event.data.name}: ${event.data.status}`)
    } else if (event.type === 'progress') drawProgress(event.data)
    else if (event.type === 'note') { clearBar(); console.log(`  note: ${event.data.message}`) }
    else if (event.type === 'result') {
      clearBar()
      console.log(`\n  ${bold(`result: ${event.data.result.code}`)}\n  ${bold(event.data.result.message)}`)
    }
  },
  check: (check) => {
    clearBar()
    console.log(`  ${check.ok ? 'ok' : 'NOT OK'}  ${check.name}${check.detail === '' ? '' : `\n        ${check.detail.slice(0, 300)}`}`)
  },
  installed: async (disk) => {
    console.log('\n  the installed disk (sgdisk -p): the image\'s partitions, its GPT moved to the disk end, config-2 added')
    const table = execFileSync('sgdisk', ['-p', disk], { encoding: 'utf8' })
    for (const line of table.split('\n').slice(table.split('\n').findIndex((l) => l.startsWith('Number')))) if (line.trim() !== '') console.log(`    ${line}`)
  },
  bootConsole: (line) => { if (BOOT_LINES.test(line)) console.log(`  console| ${line.trim().slice(0, 160)}`) },
})

say(report.ok ? 'done' : 'FAILED')
const boot = report.boots[0]
if (boot !== undefined) {
  const consoleText = boot.checks.find((c) => c.name.startsWith('motd'))?.ok === true ? MOTD_LINE : '(no motd seen)'
  console.log(`  the installed system greeted with: ${bold(consoleText)}`)
}
console.log(`  rescue power-on → API: ${report.timings.rescueToApi ?? '?'} s, install: ${report.timings.install ?? '?'} s, ` +
  `boot to the motd: ${report.timings.boots.bios ?? '?'} s`)
console.log(`  logs: ${report.dir} (rescue.console.log, boot-bios.console.log, payload.json, report.json)`)
if (report.error !== undefined) console.log(`  error: ${report.error}`)
process.exitCode = report.ok ? 0 : 1
