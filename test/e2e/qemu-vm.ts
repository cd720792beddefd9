/**
 * One QEMU virtual machine under TCG (this harness never assumes /dev/kvm): its disks, its
 * firmware (SeaBIOS, or OVMF with a private copy of the variable store), its network (QEMU user
 * networking with `restrict=on`: the guest reaches nothing but the forwards below, and every
 * forward's host end is 127.0.0.1), its serial console in a file that is followed live, and QMP
 * to power it off. The process is only ever ended by its own pid.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, promises as fs } from 'node:fs'
import { createConnection } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** How the disk is attached: virtio-blk with 512-byte or 4096-byte logical sectors, NVMe, SATA (AHCI). */
export type DiskBus = 'virtio' | 'virtio-4k' | 'nvme' | 'sata'
export type Firmware = 'bios' | 'uefi'

export interface VmDisk {
  file: string
  format: 'raw' | 'qcow2'
  bus: DiskBus
  /** The serial number the disk reports (virtio-blk: /sys/block/vdX/serial, at most 20 characters; NVMe: its serial). */
  serial?: string
}

/** Guest connections to guestAddress:guestPort are handed to 127.0.0.1:hostPort. */
export interface GuestForward {
  guestAddress: string
  guestPort: number
  hostPort: number
}

export interface VmNetwork {
  /** 127.0.0.1:hostPort on this machine reaches guestPort in the guest. */
  hostForwards: Array<{ hostPort: number; guestPort: number }>
  guestForwards: GuestForward[]
  /** The NIC's MAC address (QEMU's default 52:54:00:12:34:56 when not given). */
  mac?: string
}

export interface VmOptions {
  name: string
  /** Folder for the console log, the QMP socket and the OVMF variable store. */
  dir: string
  firmware: Firmware
  memoryMiB: number
  cpus?: number
  /** Direct kernel boot (the rescue image); otherwise the firmware boots the first disk. */
  kernel?: { vmlinuz: string; initrd: string; append: string }
  disks: VmDisk[]
  /** No network at all when undefined. */
  network?: VmNetwork
  /** Called with each console line (escape sequences removed), as it comes. */
  onConsoleLine?: (line: string) => void
}

const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE.fd'
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS.fd'
const CONSOLE_POLL_MS = 200

/** ANSI/VT100 escape sequences and carriage returns: firmware and GRUB draw with them. */
export function plainConsoleText (text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1bc/g, '').replace(/\r/g, '')
}

function diskArgs (disk: VmDisk, index: number): string[] {
  const id = `disk${index}`
  const drive = `file=${disk.file},format=${disk.format},if=none,id=${id},discard=unmap`
  const boot = `bootindex=${index + 1}` // 0 is taken by -kernel (linuxboot)
  const serial = disk.serial === undefined ? '' : `,serial=${disk.serial}`
  switch (disk.bus) {
    case 'virtio':
      return ['-drive', drive, '-device', `virtio-blk-pci,drive=${id}${serial},${boot}`]
    case 'virtio-4k':
      return ['-drive', drive, '-device', `virtio-blk-pci,drive=${id},logical_block_size=4096,physical_block_size=4096${serial},${boot}`]
    case 'nvme':
      return ['-drive', drive, '-device', `nvme,drive=${id},serial=${disk.serial ?? `BYOIE2E${index}`},${boot}`]
    case 'sata':
      // q35's own ICH9 AHCI controller, bus ide.N
      return ['-drive', drive, '-device', `ide-hd,drive=${id},bus=ide.${index},${boot}`]
  }
}

function networkArgs (network: VmNetwork | undefined): string[] {
  if (network === undefined) return ['-nic', 'none']
  const parts = ['user', 'id=net0', 'restrict=on']
  for (const f of network.hostForwards) parts.push(`hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`)
  // guestfwd's chardev form makes one connection for the VM's whole life; the cmd: form runs the
  // command for each guest connection, its standard input and output being that connection.
  for (const f of network.guestForwards) parts.push(`guestfwd=tcp:${f.guestAddress}:${f.guestPort}-cmd:busybox nc 127.0.0.1 ${f.hostPort}`)
  return ['-netdev', parts.join(','), '-device', `virtio-net-pci,netdev=net0${network.mac === undefined ? '' : `,mac=${network.mac}`}`]
}

export class QemuVm {
  readonly consoleLog: string
  private readonly qmpSocket: string
  private child: ChildProcess | undefined
  private exited: Promise<number | null> = Promise.resolve(null)
  private exitCode: number | null | undefined
  /** What QEMU printed on its standard error (why it would not start, mostly). */
  stderr = ''
  private consoleText = ''
  private consoleOffset = 0
  private partialLine = ''
  private poller: NodeJS.Timeout | undefined
  private reading: Promise<void> = Promise.resolve()
  readonly startedAtMs = Date.now()

  constructor (readonly options: VmOptions) {
    this.consoleLog = join(options.dir, `${options.name}.console.log`)
    this.qmpSocket = join(options.dir, `${options.name}.qmp`)
  }

  get pid (): number | undefined { return this.child?.pid }
  get running (): boolean { return this.child !== undefined && this.exitCode === undefined }
  /** Everything the console printed so far, escape sequences removed. */
  get console (): string { return plainConsoleText(this.consoleText) }

  args (): string[] {
    const o = this.options
    const args = [
      '-name', o.name,
      '-accel', 'tcg',
      '-machine', 'q35',
      '-cpu', 'max',
      '-smp', String(o.cpus ?? 2),
      '-m', `${o.memoryMiB}M`,
      '-nographic', '-monitor', 'none', '-parallel', 'none',
      '-serial', `file:${this.consoleLog}`,
      '-qmp', `unix:${this.qmpSocket},server=on,wait=off`,
      '-no-reboot',
    ]
    if (o.firmware === 'uefi') {
      const vars = join(o.dir, `${o.name}.OVMF_VARS.fd`)
      copyFileSync(OVMF_VARS, vars)
      args.push('-drive', `if=pflash,format=raw,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,file=${vars}`)
    }
    if (o.kernel !== undefined) args.push('-kernel', o.kernel.vmlinuz, '-initrd', o.kernel.initrd, '-append', o.kernel.append)
    o.disks.forEach((disk, i) => args.push(...diskArgs(disk, i)))
    args.push(...networkArgs(o.network))
    return args
  }

  async start (): Promise<void> {
    await fs.mkdir(this.options.dir, { recursive: true })
    await fs.rm(this.consoleLog, { force: true })
    await fs.rm(this.qmpSocket, { force: true })
    await fs.writeFile(this.consoleLog, '')
    const child = spawn('qemu-system-x86_64', this.args(), { stdio: ['ignore', 'ignore', 'pipe'] })
    this.child = child
    child.stderr?.on('data', (chunk: Buffer) => { this.stderr += chunk.toString() })
    this.exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        this.exitCode = code
        resolve(code)
      })
      child.once('error', (err) => {
        this.exitCode = null
        this.options.onConsoleLine?.(`[qemu] ${err.message}`)
        resolve(null)
      })
    })
    this.poller = setInterval(() => { void this.readConsole() }, CONSOLE_POLL_MS)
  }

  /** Reads what the console added since the last read; reads never overlap (one offset). */
  private async readConsole (): Promise<void> {
    const next = this.reading.then(async () => { await this.readConsoleOnce() })
    this.reading = next
    await next
  }

  private async readConsoleOnce (): Promise<void> {
    let handle
    try {
      handle = await fs.open(this.consoleLog, 'r')
      const { size } = await handle.stat()
      if (size <= this.consoleOffset) return
      const buffer = Buffer.alloc(size - this.consoleOffset)
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.consoleOffset)
      this.consoleOffset += bytesRead
      const text = buffer.subarray(0, bytesRead).toString('utf8')
      this.consoleText += text
      const lines = (this.partialLine + plainConsoleText(text)).split('\n')
      this.partialLine = lines.pop() ?? ''
      for (const line of lines) this.options.onConsoleLine?.(line)
    } catch {
      // the file is (re)created by QEMU; try again on the next tick
    } finally {
      await handle?.close()
    }
  }

  /**
   * Resolves with the first match of `pattern` in the console (escape sequences removed), or
   * undefined when `timeoutMs` passes or the VM stops first.
   */
  async waitForConsole (pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray | undefined> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      await this.readConsole()
      const match = this.console.match(pattern)
      if (match !== null) return match
      if (!this.running || Date.now() >= deadline) return undefined
      await sleep(CONSOLE_POLL_MS)
    }
  }

  /**
   * Waits for the guest to power itself off (QEMU exits: `-no-reboot`, and a poweroff ends the
   * process); true when it did within `timeoutMs`, false when it still runs (the caller stops it).
   */
  async waitForExit (timeoutMs: number): Promise<boolean> {
    if (this.child === undefined) return false
    let timer: NodeJS.Timeout | undefined
    const exited = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs) }),
    ])
    clearTimeout(timer)
    await this.readConsole()
    return exited
  }

  /** QMP `quit` (the VM stops at once, as when the power is cut); SIGKILL by pid if it lingers. */
  async stop (): Promise<void> {
    if (this.running) {
      await this.qmp('quit').catch(() => undefined)
      const stopped = await Promise.race([this.exited.then(() => true), sleep(10_000).then(() => false)])
      if (!stopped && this.child?.pid !== undefined) {
        process.kill(this.child.pid, 'SIGKILL')
        await this.exited
      }
    }
    clearInterval(this.poller)
    await this.readConsole()
    if (this.partialLine !== '') this.options.onConsoleLine?.(this.partialLine)
    this.partialLine = ''
  }

  /** One QMP command after the capabilities handshake; resolves with the answer's text. */
  private async qmp (command: string): Promise<string> {
    return await new Promise((resolve, reject) => {
      const socket = createConnection(this.qmpSocket)
      let received = ''
      let sent = false
      const timer = setTimeout(() => { socket.destroy(); reject(new Error('QMP timeout')) }, 5_000)
      socket.on('data', (chunk) => {
        received += chunk.toString()
        if (!sent && received.includes('"QMP"')) {
          sent = true
          socket.write(`{"execute":"qmp_capabilities"}\n{"execute":"${command}"}\n`)
        }
      })
      socket.on('close', () => { clearTimeout(timer); resolve(received) })
      socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    })
  }
}
