import { execFileSync } from 'node:child_process'
import { closeSync, ftruncateSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * The qcow2 of issue 11 item 7, written byte by byte (qemu-img would never lay a file out so): a
 * valid image whose guest disk is mostly empty, but whose every empty L1 range points at one shared,
 * all-zero L2 table instead of having none, with 512-byte clusters so that one L1 entry covers only
 * 32 KiB. A GPT (made by sgdisk) puts an EFI system partition at 2 GiB; its FAT16 `\EFI` directory
 * is a chain of 4096 clusters (the 65,536 entries the FAT spec allows, all deleted), so looking up
 * `\EFI\BOOT\BOOTX64.EFI` reads 4096 guest clusters near 2 GiB, and finds nothing. The 4096
 * directory clusters share one host cluster: the file stays small (≈ 0.6 MiB at 2 GiB virtual,
 * ≈ 4.5 MiB at 16 GiB, mostly the L1 table).
 */

const SECTOR_BYTES = 512
const CLUSTER_BITS = 9 // 512-byte clusters: the smallest qcow2 allows, the most L1 entries per GiB
const CLUSTER_BYTES = 2 ** CLUSTER_BITS
const L2_ENTRIES = CLUSTER_BYTES / 8
const L1_COVER_BYTES = L2_ENTRIES * CLUSTER_BYTES // 32 KiB

export const HOSTILE_ESP_OFFSET_BYTES = 2 * 1024 ** 3 // 2 GiB
const ESP_SECTORS = 8192 // 4 MiB
const DIRECTORY_CLUSTERS = 4096 // 4096 × 512 B = 65,536 entries of 32 bytes

export interface HostileQcow2 {
  file: Buffer
  virtualSizeBytes: number
  /** A path whose lookup walks the whole `\EFI` chain and finds nothing. */
  efiPath: string
}

/**
 * A qcow2 v3 file with 512-byte clusters: `clusters` maps guest cluster numbers to their bytes
 * (identical contents share one host cluster), every other guest cluster reads as zeros through
 * the shared empty L2 table. Layout: header, refcount table (never read by the agent), L1 table,
 * the shared empty L2 table, the other L2 tables, data.
 */
export function buildSharedL2Qcow2 (virtualSizeBytes: number, clusters: ReadonlyMap<number, Buffer>): Buffer {
  const l1Entries = Math.ceil(virtualSizeBytes / L1_COVER_BYTES)
  const l1Clusters = Math.ceil((l1Entries * 8) / CLUSTER_BYTES)
  const l1Offset = 2 * CLUSTER_BYTES
  const emptyL2Offset = l1Offset + l1Clusters * CLUSTER_BYTES
  let next = emptyL2Offset + CLUSTER_BYTES

  const l2Offsets = new Map<number, number>()
  for (const guestCluster of [...clusters.keys()].sort((a, b) => a - b)) {
    const l1Index = Math.floor(guestCluster / L2_ENTRIES)
    if (!l2Offsets.has(l1Index)) {
      l2Offsets.set(l1Index, next)
      next += CLUSTER_BYTES
    }
  }
  const hostOf = new Map<string, number>()
  const placed: Array<[number, Buffer]> = []
  for (const data of clusters.values()) {
    const key = data.toString('base64')
    if (!hostOf.has(key)) {
      hostOf.set(key, next)
      placed.push([next, data])
      next += CLUSTER_BYTES
    }
  }

  const file = Buffer.alloc(next)
  // Header (QEMU docs/interop/qcow2.rst "Header"), version 3, 104 bytes, no extensions.
  file.writeUInt32BE(0x514649fb, 0) // magic
  file.writeUInt32BE(3, 4) // version
  file.writeUInt32BE(CLUSTER_BITS, 20)
  file.writeBigUInt64BE(BigInt(virtualSizeBytes), 24)
  file.writeUInt32BE(l1Entries, 36)
  file.writeBigUInt64BE(BigInt(l1Offset), 40)
  file.writeBigUInt64BE(BigInt(CLUSTER_BYTES), 48) // refcount_table_offset
  file.writeUInt32BE(1, 56) // refcount_table_clusters
  file.writeUInt32BE(4, 96) // refcount_order: 16-bit refcounts
  file.writeUInt32BE(104, 100) // header_length
  for (let i = 0; i < l1Entries; i++) {
    file.writeBigUInt64BE(BigInt(l2Offsets.get(i) ?? emptyL2Offset), l1Offset + i * 8)
  }
  for (const [guestCluster, data] of clusters) {
    const l2 = l2Offsets.get(Math.floor(guestCluster / L2_ENTRIES)) ?? 0
    const host = hostOf.get(data.toString('base64')) ?? 0
    file.writeBigUInt64BE(BigInt(host), l2 + (guestCluster % L2_ENTRIES) * 8)
  }
  for (const [host, data] of placed) data.copy(file, host)
  return file
}

/** The FAT16 boot sector, FAT, root directory and `\EFI` directory of the ESP, by sector. */
function espSectors (): Map<number, Buffer> {
  const reserved = 1
  const fatSectors = 32 // (8127 clusters + 2) × 2 bytes ≤ 32 sectors
  const rootEntries = 16 // one sector
  const rootSectors = (rootEntries * 32) / SECTOR_BYTES
  const dataStart = reserved + fatSectors + rootSectors

  const boot = Buffer.alloc(SECTOR_BYTES)
  boot.set([0xeb, 0x3c, 0x90], 0) // jump
  boot.write('HOSTILE ', 3, 'latin1') // OEM name
  boot.writeUInt16LE(SECTOR_BYTES, 11) // BPB_BytsPerSec
  boot[13] = 1 // BPB_SecPerClus
  boot.writeUInt16LE(reserved, 14) // BPB_RsvdSecCnt
  boot[16] = 1 // BPB_NumFATs
  boot.writeUInt16LE(rootEntries, 17) // BPB_RootEntCnt
  boot.writeUInt16LE(ESP_SECTORS, 19) // BPB_TotSec16
  boot[21] = 0xf8 // BPB_Media
  boot.writeUInt16LE(fatSectors, 22) // BPB_FATSz16
  boot[38] = 0x29 // BS_BootSig
  boot.write('NO NAME    FAT16   ', 43, 'latin1') // BS_VolLab, BS_FilSysType
  boot.writeUInt16LE(0xaa55, 510)

  // FAT16: clusters 2 → 3 → … → 4097, end of chain.
  const fat = Buffer.alloc(fatSectors * SECTOR_BYTES)
  fat.writeUInt16LE(0xfff8, 0)
  fat.writeUInt16LE(0xffff, 2)
  for (let cluster = 2; cluster < 2 + DIRECTORY_CLUSTERS; cluster++) {
    fat.writeUInt16LE(cluster === 1 + DIRECTORY_CLUSTERS ? 0xffff : cluster + 1, cluster * 2)
  }

  const root = Buffer.alloc(rootSectors * SECTOR_BYTES)
  root.write('EFI        ', 0, 'latin1')
  root[11] = 0x10 // ATTR_DIRECTORY
  root.writeUInt16LE(2, 26) // DIR_FstClusLO

  // Every entry of `\EFI` deleted (0xE5): no end marker, so the whole chain is read.
  const deleted = Buffer.alloc(CLUSTER_BYTES)
  for (let at = 0; at < deleted.length; at += 32) {
    deleted.write('DELETED TXT', at, 'latin1')
    deleted[at] = 0xe5
  }

  const sectors = new Map<number, Buffer>([[0, boot], [reserved + fatSectors, root]])
  for (let i = 0; i < fatSectors; i++) {
    const sector = fat.subarray(i * SECTOR_BYTES, (i + 1) * SECTOR_BYTES)
    if (sector.some((byte) => byte !== 0)) sectors.set(reserved + i, sector)
  }
  for (let i = 0; i < DIRECTORY_CLUSTERS; i++) sectors.set(dataStart + i, deleted)
  return sectors
}

/** The ESP's FAT16 filesystem alone (4 MiB), for the FAT reader's own tests. */
export function hostileEspBytes (): Buffer {
  const fs = Buffer.alloc(ESP_SECTORS * SECTOR_BYTES)
  for (const [sector, data] of espSectors()) data.copy(fs, sector * SECTOR_BYTES)
  return fs
}

/** sgdisk's GPT for a disk of `sizeBytes` with one ESP at 2 GiB: its non-zero sectors. */
function gptSectors (sizeBytes: number): Map<number, Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-hostile-'))
  try {
    const path = join(dir, 'gpt.raw')
    const fd = openSync(path, 'w+')
    try {
      ftruncateSync(fd, sizeBytes)
      const espLba = HOSTILE_ESP_OFFSET_BYTES / SECTOR_BYTES
      execFileSync('sgdisk', ['-o', '-n', `1:${espLba}:+${ESP_SECTORS}`, '-t', '1:ef00', '-c', '1:EFI', path], { stdio: 'ignore' })
      const sectors = new Map<number, Buffer>()
      const total = sizeBytes / SECTOR_BYTES
      for (const lba of [...Array(34).keys(), ...Array.from({ length: 33 }, (_, i) => total - 33 + i)]) {
        const sector = Buffer.alloc(SECTOR_BYTES)
        readSync(fd, sector, 0, SECTOR_BYTES, lba * SECTOR_BYTES)
        if (sector.some((byte) => byte !== 0)) sectors.set(lba, sector)
      }
      return sectors
    } finally {
      closeSync(fd)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The hostile image at `virtualSizeBytes` (at least 2 GiB + 5 MiB, a multiple of 32 KiB). */
export function makeHostileEspQcow2 (virtualSizeBytes = HOSTILE_ESP_OFFSET_BYTES + 8 * 1024 * 1024): HostileQcow2 {
  const clusters = gptSectors(virtualSizeBytes)
  const espLba = HOSTILE_ESP_OFFSET_BYTES / SECTOR_BYTES
  for (const [sector, data] of espSectors()) clusters.set(espLba + sector, data)
  return { file: buildSharedL2Qcow2(virtualSizeBytes, clusters), virtualSizeBytes, efiPath: '\\EFI\\BOOT\\BOOTX64.EFI' }
}
