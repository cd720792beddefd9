/**
 * The inputs every case starts from, made once per run in its work directory from seeded bytes:
 * raw images with a GPT (sgdisk) or an MBR (sfdisk), and qcow2 files of one guest made by
 * qemu-img in every layout the reader handles (v2/v3, 512 B to 64 KiB clusters, extended L2,
 * zlib and zstd compression).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Random } from './random.js'
import { MiB } from './target-disk.js'

export interface Qcow2Fixture {
  name: string
  bytes: Buffer
  /** `qemu-img convert -O raw` of it. */
  guest: Buffer
}

export interface Fixtures {
  /** A raw image with a GPT: an ESP and a root partition, the backup at its end (an odd size, no multiple of a MiB). */
  gptImage: Buffer
  /** A raw image with an MBR: two primary partitions. */
  mbrImage: Buffer
  qcow2: Qcow2Fixture[]
}

const RAW_BYTES = 3 * MiB + 512 * 7
const GUEST_BYTES = 4 * MiB

/** Seeded bytes: text-like lines (compressible), zeros and noise, in bands. */
function guestBytes (random: Random, sizeBytes: number): Buffer {
  const out = Buffer.alloc(sizeBytes)
  for (let at = 0; at < sizeBytes; at += 256 * 1024) {
    const band = out.subarray(at, at + 256 * 1024)
    const kind = random.int(0, 2)
    if (kind === 0) {
      let o = 0
      for (let line = random.int(0, 1e6); o < band.length; line++) {
        o += band.write(`line ${line} ${(line * 2654435761) >>> 0} ${'abcdefghij'.repeat(line % 7)}\n`, o)
      }
    } else if (kind === 1) {
      random.bytes(band.length).copy(band)
    }
  }
  return out
}

function rawWith (dir: string, name: string, bytes: Buffer, partition: (file: string) => void): Buffer {
  const file = join(dir, name)
  writeFileSync(file, bytes)
  partition(file)
  return readFileSync(file)
}

export function makeFixtures (dir: string): Fixtures {
  const random = new Random(0xf1c5)
  const gptImage = rawWith(dir, 'gpt.raw', guestBytes(random, RAW_BYTES), (file) => {
    execFileSync('sgdisk', ['-o', '-n', '1:2048:+1M', '-t', '1:ef00', '-c', '1:EFI', '-n', '2:0:0', '-t', '2:8300', '-c', '2:root', file], { stdio: 'ignore' })
  })
  const mbrImage = rawWith(dir, 'mbr.raw', guestBytes(random, RAW_BYTES), (file) => {
    execFileSync('sfdisk', ['-q', file], {
      input: 'label: dos\nstart=2048, size=2048, type=83, bootable\nstart=4096, size=2048, type=83\n',
      stdio: ['pipe', 'ignore', 'ignore'],
    })
  })
  const guestFile = join(dir, 'guest.raw')
  rawWith(dir, 'guest.raw', guestBytes(random, GUEST_BYTES), (file) => {
    execFileSync('sgdisk', ['-o', '-n', '1:2048:0', '-t', '1:8300', '-c', '1:root', file], { stdio: 'ignore' })
  })
  const layouts: Array<[string, string[], boolean]> = [
    ['v2-512B', ['compat=0.10', 'cluster_size=512'], false],
    ['v2-4K-zlib', ['compat=0.10', 'cluster_size=4096'], true],
    ['v3-1K', ['cluster_size=1024'], false],
    ['v3-4K-zlib', ['cluster_size=4096'], true],
    ['v3-64K', ['cluster_size=65536'], false],
    ['v3-64K-zlib', ['cluster_size=65536'], true],
    ['v3-64K-zstd', ['cluster_size=65536', 'compression_type=zstd'], true],
    ['v3-16K-extl2', ['cluster_size=16384', 'extended_l2=on'], false],
    ['v3-64K-extl2-zstd', ['cluster_size=65536', 'extended_l2=on', 'compression_type=zstd'], true],
  ]
  const qcow2 = layouts.map(([name, options, compress]) => {
    const file = join(dir, `${name}.qcow2`)
    execFileSync('qemu-img', ['convert', '-O', 'qcow2', ...(compress ? ['-c'] : []), '-o', options.join(','), guestFile, file], { stdio: 'ignore' })
    return { name, bytes: readFileSync(file), guest: qemuRaw(file) }
  })
  return { gptImage, mbrImage, qcow2 }
}

/** What qemu-img makes of a qcow2 file, or undefined if it refuses it (or takes over 20 s). */
export function qemuRaw (file: string): Buffer {
  const raw = `${file}.raw`
  execFileSync('qemu-img', ['convert', '-O', 'raw', file, raw], { stdio: 'ignore', timeout: 20_000 })
  return readFileSync(raw)
}
