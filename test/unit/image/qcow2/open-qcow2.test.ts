import t from 'tap'
import { readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { isInstallError } from '../../../../agent/errors/install-error.js'
import { isQcow2, openQcow2, writeQcow2 } from '../../../../agent/image/qcow2/index.js'
import { parseQcow2Header } from '../../../../agent/image/qcow2/header.js'
import { tempDir } from '../../../helpers/disk-files.js'
import {
  convertQcow2,
  createQcow2,
  loadSource,
  makePatternFile,
  MemoryTarget,
  MiB,
  patchU32,
  patchU64,
  qemuImg,
  qemuIo,
} from '../../../helpers/qcow2-fixtures.js'
import type { TapTest } from '../../../helpers/tap.js'

/** What openQcow2 accepts, and what it refuses: each refusal with its code and exact message. */

const dir = tempDir('byoi-qcow2-open-')
t.teardown(dir.remove)
const pattern = makePatternFile(dir.path, MiB)
let serial = 0

/** A v3 image with 64 KiB clusters and data at 0 and at 1 MiB (so with one L2 table). */
function plainImage (options: string[] = [], sizeBytes = 16 * MiB): string {
  const file = join(dir.path, `o${serial++}.qcow2`)
  createQcow2(file, sizeBytes, options)
  qemuIo(file, ['write -P 0x11 0 64k', `write -s ${pattern} 1M 128k`])
  return file
}

/** The same, with its clusters zlib-compressed. */
function compressedImage (): string {
  const file = join(dir.path, `o${serial++}.qcow2`)
  convertQcow2(plainImage(), file, { compress: true })
  return file
}

/** Where the L2 entry of `guestOffset` lies in the file (first word), found through the L1 table. */
function l2EntryOffset (file: string, guestOffset: number): number {
  const bytes = readFileSync(file)
  const clusterBits = bytes.readUInt32BE(20)
  const extendedL2 = bytes.readUInt32BE(4) === 3 && (bytes.readBigUInt64BE(72) & 16n) !== 0n
  const entryBytes = extendedL2 ? 16 : 8
  const l2Entries = 2 ** clusterBits / entryBytes
  const cluster = Math.floor(guestOffset / 2 ** clusterBits)
  const l1Offset = Number(bytes.readBigUInt64BE(40))
  const l2Offset = Number(bytes.readBigUInt64BE(l1Offset + 8 * Math.floor(cluster / l2Entries)) & 0x00fffffffffffe00n)
  if (l2Offset === 0) throw new Error(`no L2 table for ${guestOffset}`)
  return l2Offset + entryBytes * (cluster % l2Entries)
}

function fileSize (file: string): number {
  return readFileSync(file).length
}

async function refuses (t: TapTest, file: string, code: string, message: string): Promise<void> {
  try {
    await openQcow2(loadSource(file))
    t.fail('opened')
  } catch (err) {
    t.ok(isInstallError(err), 'an InstallError')
    t.equal((err as { code?: unknown }).code, code)
    t.equal((err as Error).message, message)
  }
}

const unsupported = (feature: string): string => `Bad format image, qcow2 feature not supported: ${feature}.`
const damaged = (reason: string): string => `Bad format image, qcow2 file is damaged: ${reason}.`

t.test('isQcow2 looks at the magic only', async (t) => {
  t.ok(isQcow2(Buffer.from('QFI\xfb\0\0\0\x03', 'latin1')))
  t.notOk(isQcow2(Buffer.from('QFI', 'latin1')))
  t.notOk(isQcow2(Buffer.alloc(512)))
  t.notOk(isQcow2(Buffer.from('\x7fELF')))
})

t.test('what the header says', async (t) => {
  const v3 = await openQcow2(loadSource(plainImage()))
  t.match(v3, {
    version: 3,
    virtualSizeBytes: 16 * MiB,
    clusterBits: 16,
    clusterBytes: 65536,
    compressionType: 'deflate',
    extendedL2: false,
    snapshots: 0,
    dirty: false,
  })
  t.equal(v3.l2TableOffsets.length, 1)
  const v2 = await openQcow2(loadSource(plainImage(['compat=0.10', 'cluster_size=4k'])))
  t.match(v2, { version: 2, clusterBits: 12, compressionType: 'deflate', extendedL2: false })
  t.equal(v2.l2TableOffsets.length, 8, '16 MiB in 2 MiB L2 ranges')
  const zstd = await openQcow2(loadSource(plainImage(['compression_type=zstd', 'extended_l2=on', 'cluster_size=2M'])))
  t.match(zstd, { compressionType: 'zstd', extendedL2: true, clusterBits: 21 })
  const snapshotted = plainImage()
  qemuImg(['snapshot', '-c', 'one', snapshotted])
  qemuImg(['snapshot', '-c', 'two', snapshotted])
  t.equal((await openQcow2(loadSource(snapshotted))).snapshots, 2)
  const odd = await openQcow2(loadSource(plainImage([], 10 * MiB + 512)))
  t.equal(odd.virtualSizeBytes, 10 * MiB + 512)
})

t.test('header extensions are listed within cluster 0', async (t) => {
  const header = parseQcow2Header(loadSource(plainImage()))
  t.equal(header.headerBytes, 112)
  t.match(header.extensions, [{ type: 0x6803f857, offset: 120, length: 384 }], 'qemu-img writes the feature name table')
  const v2 = parseQcow2Header(loadSource(plainImage(['compat=0.10'])))
  t.equal(v2.headerBytes, 72)
})

t.test('a size field not a multiple of 512 is rounded down, as qemu does', async (t) => {
  const file = plainImage()
  patchU64(file, 24, () => BigInt(16 * MiB - 100))
  t.equal((await openQcow2(loadSource(file))).virtualSizeBytes, 16 * MiB - 512)
})

t.test('refused features', async (t) => {
  t.test('backing file', async (t) => {
    const base = join(dir.path, 'base.qcow2')
    createQcow2(base, 16 * MiB)
    const overlay = join(dir.path, 'overlay.qcow2')
    qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay])
    await refuses(t, overlay, 'QCOW2_UNSUPPORTED', unsupported('backing file'))
  })
  t.test('external data file', async (t) => {
    const file = join(dir.path, 'external.qcow2')
    createQcow2(file, 16 * MiB, [`data_file=${join(dir.path, 'external.raw')}`])
    await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported('external data file'))
  })
  t.test('encryption (AES)', async (t) => {
    const file = join(dir.path, 'aes.qcow2')
    qemuImg(['create', '-q', '--object', 'secret,id=sec0,data=123456', '-f', 'qcow2', '-o', 'encrypt.format=aes,encrypt.key-secret=sec0', file, '16M'])
    await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported('encryption'))
  })
  t.test('encryption (a method qemu does not know)', async (t) => {
    const file = plainImage()
    patchU32(file, 32, 7)
    await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported('encryption'))
  })
  t.test('the corrupt bit', async (t) => {
    const file = plainImage()
    patchU64(file, 72, (v) => v | 2n)
    await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported('corrupt bit set'))
  })
  t.test('unknown incompatible bits', async (t) => {
    const file = plainImage()
    patchU64(file, 72, (v) => v | (1n << 20n) | (1n << 63n))
    await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported('unknown incompatible feature bits 0x8000000000100000'))
  })
  for (const version of [1, 4]) {
    t.test(`version ${version}`, async (t) => {
      const file = plainImage()
      patchU32(file, 4, version)
      await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported(`version ${version}`))
    })
  }
  t.test('compression type 2', async (t) => {
    const file = plainImage()
    const bytes = readFileSync(file)
    bytes[104] = 2
    writeFileSync(file, bytes)
    await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported('compression type 2'))
  })
  t.test('cluster_bits 22', async (t) => {
    const file = plainImage()
    patchU32(file, 20, 22)
    await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported('cluster size 2^22 bytes'))
  })
  t.test('a virtual size past 2^53', async (t) => {
    const file = plainImage()
    patchU64(file, 24, () => 1n << 60n)
    await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported('virtual size of 1152921504606846976 bytes'))
  })
})

t.test('damaged headers', async (t) => {
  const cases: Array<[string, (file: string) => void, string]> = [
    ['cluster_bits 8', (f) => { patchU32(f, 20, 8) }, 'cluster_bits 8 is below 9'],
    ['cluster_bits 0xffffffff', (f) => { patchU32(f, 20, 0xffffffff) }, 'unsupported'],
    ['header length above the cluster size', (f) => { patchU32(f, 100, 65544) }, 'header length 65544 exceeds the cluster size 65536'],
    ['header length below 104', (f) => { patchU32(f, 100, 72) }, 'header length 72 is below 104'],
    ['refcount order 7', (f) => { patchU32(f, 96, 7) }, 'refcount order 7 is above 6'],
    ['compression type bit without zstd', (f) => { patchU64(f, 72, (v) => v | 8n) }, 'the compression type bit does not match compression type 0'],
    ['extended L2 with 4 KiB clusters', (f) => { patchU32(f, 20, 12); patchU64(f, 72, (v) => v | 16n) }, 'extended L2 entries with 4096-byte clusters'],
    ['no refcount table', (f) => { patchU32(f, 56, 0) }, 'the image has no refcount table'],
    ['a refcount table over 8 MiB', (f) => { patchU32(f, 56, 129) }, 'refcount table of 129 entries is too large'],
    ['too many snapshots', (f) => { patchU32(f, 60, 65537) }, 'snapshot table of 65537 entries is too large'],
    ['an unaligned snapshot table', (f) => { patchU32(f, 60, 1); patchU64(f, 64, () => 12345n) }, 'snapshot table offset 12345 is not cluster-aligned'],
    ['l1_size huge', (f) => { patchU32(f, 36, 0x7fffffff) }, 'L1 table of 2147483647 entries is too large'],
    ['l1_size too small', (f) => { patchU32(f, 36, 0) }, 'L1 table of 0 entries is too small for 16777216 bytes'],
    ['an unaligned L1 table', (f) => { patchU64(f, 40, (v) => v + 8n) }, 'L1 table offset 196616 is not cluster-aligned'],
    ['an L1 table offset past 2^53', (f) => { patchU64(f, 40, () => 1n << 60n) }, 'L1 table offset 1152921504606846976 is too large'],
    ['an L1 table beyond the file', (f) => { patchU64(f, 40, () => BigInt(64 * MiB)) }, `L1 table at ${64 * MiB} lies beyond the end of the file`],
    ['a header extension longer than cluster 0', (f) => { patchU32(f, 116, 0xfffffff0) }, 'header extension at 112 is too large'],
  ]
  for (const [name, patch, reason] of cases) {
    t.test(name, async (t) => {
      const file = plainImage()
      patch(file)
      if (reason === 'unsupported') await refuses(t, file, 'QCOW2_UNSUPPORTED', unsupported('cluster size 2^4294967295 bytes'))
      else await refuses(t, file, 'QCOW2_DAMAGED', damaged(reason))
    })
  }
  t.test('not qcow2 at all', async (t) => {
    const file = join(dir.path, 'zeros.img')
    writeFileSync(file, Buffer.alloc(4096))
    await refuses(t, file, 'QCOW2_DAMAGED', damaged('the file does not start with the qcow2 magic'))
  })
  t.test('truncated inside the header', async (t) => {
    const file = plainImage()
    truncateSync(file, 50)
    await refuses(t, file, 'QCOW2_DAMAGED', damaged('the file ends inside its header, at 50 bytes'))
    truncateSync(file, 100)
    await refuses(t, file, 'QCOW2_DAMAGED', damaged('the file ends inside its header, at 100 bytes'))
  })
  t.test('truncated after the header (header only)', async (t) => {
    const file = plainImage()
    truncateSync(file, 112)
    await refuses(t, file, 'QCOW2_DAMAGED', damaged('L1 table at 196608 lies beyond the end of the file'))
  })
  t.test('truncated inside the data', async (t) => {
    const file = plainImage()
    truncateSync(file, fileSize(file) - 4096)
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`data cluster for guest offset ${MiB + 65536} lies beyond the end of the file`))
  })
})

t.test('damaged tables', async (t) => {
  t.test('an L2 table beyond the file', async (t) => {
    const file = plainImage()
    const l1 = Number(readFileSync(file).readBigUInt64BE(40))
    patchU64(file, l1, () => (1n << 63n) | BigInt(256 * MiB))
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`L2 table at ${256 * MiB} lies beyond the end of the file`))
  })
  t.test('an unaligned L2 table', async (t) => {
    const file = plainImage()
    const l1 = Number(readFileSync(file).readBigUInt64BE(40))
    patchU64(file, l1, (v) => v + 512n)
    const l2 = Number(readFileSync(file).readBigUInt64BE(l1) & 0x00fffffffffffe00n)
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`L2 table offset ${l2} is not cluster-aligned`))
  })
  t.test('an L2 entry pointing beyond the file', async (t) => {
    const file = plainImage()
    patchU64(file, l2EntryOffset(file, MiB), () => (1n << 63n) | BigInt(512 * MiB))
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`data cluster for guest offset ${MiB} lies beyond the end of the file`))
  })
  t.test('an L2 entry past 2^53', async (t) => {
    const file = plainImage()
    patchU64(file, l2EntryOffset(file, MiB), () => 0x00f0000000000000n)
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`cluster offset for guest offset ${MiB} is too large`))
  })
  t.test('an unaligned data cluster', async (t) => {
    const file = plainImage()
    patchU64(file, l2EntryOffset(file, MiB), (v) => v + 512n)
    const host = Number(readFileSync(file).readBigUInt64BE(l2EntryOffset(file, MiB)) & 0x00fffffffffffe00n)
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`cluster offset ${host} for guest offset ${MiB} is not cluster-aligned`))
  })
  t.test('a zero cluster in a version 2 image', async (t) => {
    const file = plainImage(['compat=0.10'])
    patchU64(file, l2EntryOffset(file, MiB), (v) => v | 1n)
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`zero cluster for guest offset ${MiB} in a version 2 image`))
  })
  t.test('a compressed descriptor beyond the file', async (t) => {
    const file = compressedImage()
    // 64 KiB clusters: x = 54, offset in bits 0..53, sectors in 54..61.
    patchU64(file, l2EntryOffset(file, MiB), () => (1n << 62n) | (3n << 54n) | BigInt(64 * MiB + 100))
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`compressed cluster for guest offset ${MiB} lies beyond the end of the file`))
  })
  t.test('a compressed descriptor past 2^53', async (t) => {
    const file = compressedImage()
    patchU64(file, l2EntryOffset(file, MiB), () => (1n << 62n) | (1n << 53n))
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`compressed cluster offset for guest offset ${MiB} is too large`))
  })
  t.test('extended L2: subclusters both allocated and zero', async (t) => {
    const file = plainImage(['extended_l2=on'])
    patchU64(file, l2EntryOffset(file, MiB) + 8, (v) => v | (1n << 32n)) // zero bit of subcluster 0, allocated too
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`subclusters for guest offset ${MiB} are both allocated and zero`))
  })
  t.test('extended L2: allocated subclusters without a host cluster', async (t) => {
    const file = plainImage(['extended_l2=on'])
    patchU64(file, l2EntryOffset(file, 2 * MiB), () => 0n)
    patchU64(file, l2EntryOffset(file, 2 * MiB) + 8, () => 1n)
    await refuses(t, file, 'QCOW2_DAMAGED', damaged(`unallocated cluster for guest offset ${2 * MiB} has allocated subclusters`))
  })
})

t.test('a compressed cluster that does not decompress is refused while writing', async (t) => {
  const file = compressedImage()
  const entry = readFileSync(file).readBigUInt64BE(l2EntryOffset(file, MiB))
  const host = Number(entry & ((1n << 54n) - 1n))
  const bytes = readFileSync(file)
  bytes.fill(0xff, host, host + 64)
  writeFileSync(file, bytes)
  const source = loadSource(file)
  const image = await openQcow2(source)
  const target = new MemoryTarget(16 * MiB)
  const err: unknown = await writeQcow2(image, source, target).then(() => undefined, (e: unknown) => e)
  t.equal((err as { code?: unknown }).code, 'QCOW2_DAMAGED')
  t.equal((err as Error).message, damaged(`compressed cluster for guest offset ${MiB} does not decompress`))
  t.equal(target.outOfBounds, 0)
})
