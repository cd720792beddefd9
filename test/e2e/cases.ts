/**
 * The e2e matrix: image formats, disk buses and sector sizes, a qcow2 streamed over a small memory
 * budget, a disk larger than the image, a bad checksum (in memory and streamed), and a download cut
 * mid-way. `make e2e` runs them all,
 * `make e2e-ci` the one marked `ci`.
 */
import type { DiskBus, Firmware } from './qemu-vm.js'

/** build/test-os/'s images; test-os.raw.zst is made from test-os.raw by the harness when a case needs it (zstd -3). */
export type TestImage = 'test-os.raw' | 'test-os-4k.raw' | 'test-os.qcow2' | 'test-os-zlib.qcow2' | 'test-os-zstd.qcow2' | 'test-os.raw.zst'

export type Expectation =
  /** INSTALLED; the disk then boots with each firmware listed (on bootBus, default the install's). */
  | { disk: 'installed'; code: 'INSTALLED'; boots: Firmware[]; bootBus?: DiskBus }
  /** A refusal before writing: the disk is byte for byte what it was; no firmware listed boots it. */
  | { disk: 'untouched'; code: string; noBoot: Firmware[] }
  /** A failure after writing began: first and last MiB zeroed; no firmware listed boots it. */
  | { disk: 'zeroed-ends'; code: string; noBoot: Firmware[] }

export interface E2eCase {
  name: string
  summary: string
  image: TestImage
  imageType: 'raw' | 'qcow2'
  bus: DiskBus
  diskMiB: number
  /** What the disk holds before the install (default: nothing, a sparse file). */
  prefill?: 'random-head' | 'bootable-os'
  /** The rescue VM's RAM: the agent's memory budget is RAM − 3 GiB (default 6 GiB: images go to memory). */
  rescueMemoryMiB?: number
  /** byoi.memory_limit= on the rescue kernel command line: the agent's memory budget for the image (e.g. `64MiB`). */
  memoryLimit?: string
  /** byoi.connections= on the rescue kernel command line (default: the agent's). */
  connections?: number
  /** Notes the install must give (each a pattern). */
  notes?: RegExp[]
  /** byoi.disk= on the rescue kernel command line (default auto). */
  diskArg?: string
  wrongChecksum?: boolean
  /** The image server cuts the first download after this many bytes. */
  cutOnceAfterBytes?: number
  expect: Expectation
  ci?: boolean
}

const GiB = 1024

export const CASES: E2eCase[] = [
  {
    name: 'raw-virtio',
    summary: 'raw image, virtio-blk 512-byte sectors, byoi.disk=auto; boots with SeaBIOS and OVMF',
    image: 'test-os.raw', imageType: 'raw', bus: 'virtio', diskMiB: 2 * GiB, prefill: 'random-head',
    expect: { disk: 'installed', code: 'INSTALLED', boots: ['bios', 'uefi'] },
    ci: true,
  },
  {
    name: 'qcow2-virtio',
    summary: 'qcow2 (uncompressed), virtio-blk 512',
    image: 'test-os.qcow2', imageType: 'qcow2', bus: 'virtio', diskMiB: 2 * GiB,
    expect: { disk: 'installed', code: 'INSTALLED', boots: ['bios'] },
  },
  {
    name: 'qcow2-zlib-nvme',
    summary: 'qcow2 compressed (zlib), NVMe, byoi.disk=/dev/nvme0n1',
    image: 'test-os-zlib.qcow2', imageType: 'qcow2', bus: 'nvme', diskMiB: 2 * GiB, diskArg: '/dev/nvme0n1',
    expect: { disk: 'installed', code: 'INSTALLED', boots: ['uefi', 'bios'] },
  },
  {
    name: 'qcow2-zstd-sata',
    summary: 'qcow2 compressed (zstd), SATA (AHCI); booted on virtio: the cloud kernel has no AHCI driver',
    image: 'test-os-zstd.qcow2', imageType: 'qcow2', bus: 'sata', diskMiB: 2 * GiB,
    expect: { disk: 'installed', code: 'INSTALLED', boots: ['bios'], bootBus: 'virtio' },
  },
  {
    name: 'qcow2-zstd-streamed',
    summary: 'qcow2 compressed (zstd), 155 MiB, over a 64 MiB budget (byoi.memory_limit=): its tables read first by Range, the file streamed once to the disk',
    image: 'test-os-zstd.qcow2', imageType: 'qcow2', bus: 'virtio', diskMiB: 2 * GiB, memoryLimit: '64MiB',
    notes: [/larger than the memory budget of 67108864 bytes/, /tables were read first/],
    expect: { disk: 'installed', code: 'INSTALLED', boots: ['bios'] },
  },
  {
    name: 'raw-zst',
    summary: 'zstd-compressed raw (.raw.zst, 136 MiB): 1.5 GiB decoded, over the 1 GiB budget of a 4 GiB VM, held compressed, verified, decoded onto the disk',
    image: 'test-os.raw.zst', imageType: 'raw', bus: 'virtio', diskMiB: 2 * GiB, rescueMemoryMiB: 4 * GiB,
    notes: [/zstd-compressed: verified, now decompressed onto the disk/],
    expect: { disk: 'installed', code: 'INSTALLED', boots: ['bios'] },
  },
  {
    name: 'raw-virtio-4kn-refused',
    summary: 'the 512-byte GPT image on a 4096-byte-sector disk: refused, disk untouched',
    image: 'test-os.raw', imageType: 'raw', bus: 'virtio-4k', diskMiB: 2 * GiB, prefill: 'random-head',
    expect: { disk: 'untouched', code: 'SECTOR_SIZE_MISMATCH', noBoot: [] },
  },
  {
    name: 'raw-virtio-4kn',
    summary: 'a 4096-byte GPT image on a 4096-byte-sector disk (ConfigDrive on FAT); UEFI boot',
    image: 'test-os-4k.raw', imageType: 'raw', bus: 'virtio-4k', diskMiB: 2 * GiB,
    expect: { disk: 'installed', code: 'INSTALLED', boots: ['uefi'] },
  },
  {
    name: 'raw-larger-disk',
    summary: 'raw on a 20 GiB disk: backup GPT moved to the disk end, config-2 at the end of the free space',
    image: 'test-os.raw', imageType: 'raw', bus: 'virtio', diskMiB: 20 * GiB,
    expect: { disk: 'installed', code: 'INSTALLED', boots: ['uefi'] },
  },
  {
    name: 'bad-checksum-memory',
    summary: 'wrong sha512, image in memory: CHECKSUM_MISMATCH, disk untouched, nothing boots',
    image: 'test-os.raw', imageType: 'raw', bus: 'virtio', diskMiB: 2 * GiB, prefill: 'random-head', wrongChecksum: true,
    expect: { disk: 'untouched', code: 'CHECKSUM_MISMATCH', noBoot: ['bios'] },
  },
  {
    name: 'bad-checksum-streamed',
    summary: 'wrong sha512, image over the memory budget (4 GiB VM): streamed, then first and last MiB zeroed; a bootable OS that was there no longer boots',
    image: 'test-os.raw', imageType: 'raw', bus: 'virtio', diskMiB: 2 * GiB, prefill: 'bootable-os', wrongChecksum: true, rescueMemoryMiB: 4 * GiB,
    expect: { disk: 'zeroed-ends', code: 'CHECKSUM_MISMATCH', noBoot: ['bios', 'uefi'] },
  },
  {
    name: 'download-resumed',
    summary: 'one connection (byoi.connections=1): the image server cuts the download at 600 MiB once; the agent resumes with Range + If-Range',
    image: 'test-os.raw', imageType: 'raw', bus: 'virtio', diskMiB: 2 * GiB, cutOnceAfterBytes: 600 * 1024 * 1024, connections: 1,
    expect: { disk: 'installed', code: 'INSTALLED', boots: ['bios'] },
  },
]
