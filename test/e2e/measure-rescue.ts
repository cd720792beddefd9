/**
 * The rescue image's figures for docs/rescue-image.md: `node dist/test/e2e/measure-rescue.js [--runs N]`.
 * Boots build/rescue/{vmlinuz,initramfs.img} under TCG (6 GiB, 2 vCPUs, one empty 2 GiB virtio
 * disk), times QEMU's start to GET /health answering through the host forward, reads the memory
 * line PID 1 prints 20 s after starting the agent, and powers off. Prints each run and the median.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, rm, stat } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { AgentClient } from './agent-client.js'
import { run } from './disk-checks.js'
import { QemuVm } from './qemu-vm.js'
import { repoRoot } from './run-case.js'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } })
const runs = Number(values.runs)
const root = repoRoot()
const dir = join(root, 'build', 'e2e', 'measure-rescue')
await rm(dir, { recursive: true, force: true })
await mkdir(dir, { recursive: true })
const disk = join(dir, 'disk.raw')
await run('qemu-img', ['create', '-q', '-f', 'raw', disk, '2G'])
const vmlinuz = join(root, 'build/rescue/vmlinuz')
const initrd = join(root, 'build/rescue/initramfs.img')
console.log(`vmlinuz ${(await stat(vmlinuz)).size} B, initramfs.img ${(await stat(initrd)).size} B`)

async function freePort (): Promise<number> {
  return await new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

const seconds: number[] = []
for (let i = 0; i < runs; i++) {
  const token = randomBytes(24).toString('hex')
  const port = await freePort()
  const vm = new QemuVm({
    name: `rescue-${i}`,
    dir,
    firmware: 'bios',
    memoryMiB: 6144,
    kernel: { vmlinuz, initrd, append: `console=ttyS0 quiet byoi.token=${token}` },
    disks: [{ file: disk, format: 'raw', bus: 'virtio' }],
    network: { hostForwards: [{ hostPort: port, guestPort: 8080 }], guestForwards: [] },
  })
  await vm.start()
  try {
    await new AgentClient(port, token).waitForHealth(180_000, () => (vm.running ? undefined : vm.stderr))
    const toApi = (Date.now() - vm.startedAtMs) / 1000
    seconds.push(toApi)
    const memory = await vm.waitForConsole(/byoi-rescue: memory: .*\)/, 60_000)
    const agentStart = /byoi-rescue: up ([\d.]+) s: starting byoi-agent/.exec(vm.console)?.[1]
    console.log(`run ${i + 1}: /health answered ${toApi.toFixed(1)} s after QEMU started ` +
      `(PID 1 started the agent at kernel uptime ${agentStart ?? '?'} s); ${memory?.[0] ?? 'no memory line'}`)
  } finally {
    await vm.stop()
  }
}
seconds.sort((a, b) => a - b)
console.log(`median power-on to API: ${(seconds[Math.floor(seconds.length / 2)] ?? 0).toFixed(1)} s over ${seconds.length} runs`)
await rm(disk, { force: true })
