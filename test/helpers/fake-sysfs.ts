/**
 * A fake /sys/block (with /proc's mountinfo and swaps) laid out as the kernel shows a server's
 * disks, for the disk choice's tests (--disk auto, hints, disk groups, Ironic's root_device). The
 * disks have names no machine has (nvme90n1, sdzy…): an install that gets as far as opening its
 * disk fails there (DISK_UNAVAILABLE), before any download or write, which proves which disk it chose.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { BlockDeviceSources } from '../../agent/disk/auto-disk.js'

const GiB = 1024 ** 3

export /** Two NVMe of 894 GiB (the first holds /), two HDDs of 3726 GiB, a USB stick; no udev. */
function fakeServer (root: string): BlockDeviceSources {
  const block = join(root, 'block')
  mkdirSync(block, { recursive: true })
  const add = (name: string, under: string, attrs: Record<string, string>): void => {
    const dir = join(root, 'devices', under, 'block', name)
    for (const [file, value] of Object.entries(attrs)) {
      mkdirSync(dirname(join(dir, file)), { recursive: true })
      writeFileSync(join(dir, file), `${value}\n`)
    }
    symlinkSync(join('..', 'devices', under, 'block', name), join(block, name))
  }
  const size = (gib: number): string => String((gib * GiB) / 512)
  add('nvme90n1', 'pci0000:00/nvme90', {
    dev: '259:90', removable: '0', ro: '0', size: size(894), 'queue/rotational': '0', 'device/model': 'SAMSUNG MZQL2960', 'device/serial': 'S64F1',
    'nvme90n1p1/partition': '1', 'nvme90n1p1/dev': '259:91',
  })
  add('nvme91n1', 'pci0000:00/nvme91', {
    dev: '259:92', removable: '0', ro: '0', size: size(894), 'queue/rotational': '0', 'device/model': 'SAMSUNG MZQL2960', 'device/serial': 'S64F2',
  })
  const hdd = (dev: string, wwid: string): Record<string, string> =>
    ({ dev, removable: '0', ro: '0', size: size(3726), 'queue/rotational': '1', 'device/model': 'HGST', 'device/wwid': wwid })
  add('sdzy', 'pci0000:00/ata1', hdd('65:0', 'naa.5000cca0aaaa0001'))
  add('sdzz', 'pci0000:00/ata2', hdd('65:16', 'naa.5000cca0aaaa0002'))
  add('sdzx', 'pci0000:00/usb1', { dev: '65:32', removable: '1', ro: '0', size: size(30), 'device/model': 'USB Stick' })
  const mountInfoPath = join(root, 'mountinfo')
  writeFileSync(mountInfoPath, '27 1 259:91 / / rw,relatime shared:1 - ext4 /dev/root rw\n')
  const swapsPath = join(root, 'swaps')
  writeFileSync(swapsPath, 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n')
  return { sysBlockDir: block, mountInfoPath, swapsPath, udevDataDir: join(root, 'no-udev'), byPathDir: join(root, 'no-by-path') }
}
