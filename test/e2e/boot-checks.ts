/**
 * Boots an installed virtual disk by itself, the way the server's firmware would (SeaBIOS, or OVMF
 * for UEFI), and reads the serial console: cloud-init found the ConfigDrive, set the host name and
 * ran the user data. Each boot runs on a qcow2 overlay of the disk, so that every boot is a first
 * boot (cloud-init runs user data once per instance) and the installed disk stays as installed.
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { run } from './disk-checks.js'
import { QemuVm, type DiskBus, type Firmware } from './qemu-vm.js'

/** The OVH example's user data line, written to /etc/motd by the user data and shown at login. */
export const MOTD_LINE = 'Hi, sounds that BYOI is a success!'

export interface BootExpectation {
  hostname: string
  /** Printed on the console by the user data. */
  marker: string
}

export interface BootCheck { name: string; ok: boolean; evidence: string }

export interface BootReport {
  firmware: Firmware
  bus: DiskBus
  ok: boolean
  seconds: number
  checks: BootCheck[]
  consoleLog: string
}

export interface BootOptions {
  disk: string
  bus: DiskBus
  firmware: Firmware
  dir: string
  name: string
  timeoutMs: number
  onConsoleLine?: (line: string) => void
}

async function overlay (disk: string, dir: string, name: string): Promise<string> {
  const file = join(dir, `${name}.overlay.qcow2`)
  await rm(file, { force: true })
  const result = await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', disk, '-F', 'raw', file])
  if (result.code !== 0) throw new Error(`qemu-img create overlay: ${result.stderr}`)
  return file
}

/** The boot's report: it passed when every check did. */
function report (options: BootOptions, started: number, checks: BootReport['checks'], consoleLog: BootReport['consoleLog']): BootReport {
  return { firmware: options.firmware, bus: options.bus, ok: checks.every((c) => c.ok), seconds: (Date.now() - started) / 1000, checks, consoleLog }
}

function lineWith (text: string, pattern: RegExp): string {
  return text.split('\n').find((line) => pattern.test(line))?.trim() ?? ''
}

function escape (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** Boots the disk and waits for the motd at the automatic root login, the last thing the test OS does. */
export async function bootInstalledDisk (options: BootOptions, expect: BootExpectation): Promise<BootReport> {
  const file = await overlay(options.disk, options.dir, options.name)
  const vm = new QemuVm({
    name: options.name,
    dir: options.dir,
    firmware: options.firmware,
    memoryMiB: 2048,
    disks: [{ file, format: 'qcow2', bus: options.bus }],
    // a NIC for cloud-init's network stage; restrict=on: it reaches nothing
    network: { hostForwards: [], guestForwards: [] },
    onConsoleLine: options.onConsoleLine,
  })
  const started = Date.now()
  await vm.start()
  try {
    await vm.waitForConsole(new RegExp(`${escape(MOTD_LINE)}[\\s\\S]*root@`), options.timeoutMs)
  } finally {
    await vm.stop()
    await rm(file, { force: true })
  }
  const text = vm.console
  const finished = /Cloud-init v\. \S+ finished at .*Datasource (\S+)/.exec(text)
  const checks: BootCheck[] = [
    { name: 'booted Linux', ok: /Linux version /.test(text), evidence: /Linux version \S+/.exec(text)?.[0] ?? '' },
    {
      name: 'cloud-init finished with the ConfigDrive datasource',
      ok: finished?.[1] === 'DataSourceConfigDrive',
      evidence: lineWith(text, /Cloud-init v\. \S+ finished/),
    },
    {
      name: `host name set to ${expect.hostname}`,
      ok: new RegExp(`^${escape(expect.hostname)} login:`, 'm').test(text),
      evidence: lineWith(text, / login:/),
    },
    {
      name: 'user data ran (its marker on the console)',
      ok: new RegExp(`^${escape(expect.marker)}\\s*$`, 'm').test(text),
      evidence: lineWith(text, new RegExp(escape(expect.marker))),
    },
    { name: 'motd from the user data at login', ok: text.includes(MOTD_LINE), evidence: lineWith(text, new RegExp(escape(MOTD_LINE))) },
  ]
  return report(options, started, checks, vm.consoleLog)
}

/**
 * Boots the disk and expects the firmware to find nothing to boot: SeaBIOS says "No bootable
 * device.", OVMF falls through to its last boot option, the UEFI shell. Linux never starts.
 */
export async function expectNoBoot (options: BootOptions): Promise<BootReport> {
  const file = await overlay(options.disk, options.dir, options.name)
  const vm = new QemuVm({
    name: options.name,
    dir: options.dir,
    firmware: options.firmware,
    memoryMiB: 1024,
    disks: [{ file, format: 'qcow2', bus: options.bus }],
    onConsoleLine: options.onConsoleLine,
  })
  // SeaBIOS tries the disk first (bootindex), says why it refuses it, then gives up on every device.
  const nothing = options.firmware === 'bios'
    ? /Booting from Hard Disk\.\.\.\s*Boot failed: not a bootable disk[\s\S]*No bootable device/
    : /starting Boot\d+ "EFI Internal Shell"/
  const started = Date.now()
  await vm.start()
  try {
    await vm.waitForConsole(new RegExp(`${nothing.source}|Linux version `), options.timeoutMs)
  } finally {
    await vm.stop()
    await rm(file, { force: true })
  }
  const text = vm.console
  const checks: BootCheck[] = [
    {
      name: options.firmware === 'bios' ? 'SeaBIOS: "not a bootable disk", then "No bootable device"' : 'OVMF: no boot option but the UEFI shell',
      ok: nothing.test(text),
      evidence: nothing.exec(text)?.[0].replace(/\s+/g, ' ') ?? '',
    },
    { name: 'Linux did not start', ok: !/Linux version /.test(text), evidence: lineWith(text, /Linux version /) },
  ]
  return report(options, started, checks, vm.consoleLog)
}
