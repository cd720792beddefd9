import { join } from 'node:path'
import { convertQcow2, createQcow2, makePatternFile, MiB, patchU64, qemuImg, qemuIo } from './qcow2-fixtures.js'

/**
 * The qcow2 layouts every writer of qcow2 images must install as `qemu-img convert -O raw` does:
 * versions, cluster sizes, compression, extended L2, preallocation, clusters out of order, internal
 * snapshots, odd sizes. Made at test time in `dir` by qemu-img and qemu-io.
 */
export interface Fixture {
  sizeBytes: number
  create?: string[]
  writes?: string[]
  /** Rewrites the file with qemu-img convert (e.g. compressed), after the writes. */
  convert?: { compress?: boolean; options?: string[] }
  /** Runs last, on the final file. */
  then?: (file: string) => void
}

export interface Qcow2Cases {
  cases: Record<string, Fixture>
  /** Makes the fixture's qcow2 file; its path. */
  build: (fixture: Fixture) => string
}

export function qcow2Cases (dir: string): Qcow2Cases {
  const pattern = makePatternFile(dir)

  /** Recognisable data here and there: in the head, across its end, a long varied run, zeros, the last bytes. */
  function standardWrites (sizeBytes: number): string[] {
    return [
      'write -P 0x11 0 64k',
      `write -s ${pattern} 192k 128k`,
      'write -P 0x12 1008k 32k', // across the end of the head (1 MiB)
      `write -s ${pattern} 2M 3M`,
      'write -P 0x13 6M 512k',
      'write -z 2560k 128k',
      `write -P 0x14 ${sizeBytes - 4096} 4096`,
    ]
  }

  let serial = 0
  function build (fixture: Fixture): string {
    const base = join(dir, `f${serial++}`)
    createQcow2(`${base}.src.qcow2`, fixture.sizeBytes, fixture.create)
    qemuIo(`${base}.src.qcow2`, fixture.writes ?? standardWrites(fixture.sizeBytes))
    let file = `${base}.src.qcow2`
    if (fixture.convert !== undefined) {
      file = `${base}.qcow2`
      convertQcow2(`${base}.src.qcow2`, file, fixture.convert)
    }
    fixture.then?.(file)
    return file
  }

  const extendedL2Writes64k = [
    'write -P 0x21 2048 2048', // one subcluster of cluster 0
    `write -s ${pattern} 1052672 8192`, // 1 MiB + 4 KiB: four subclusters after the head
    'write -z 1060864 2048', // a zero subcluster beside them
    'write -P 0x22 3M 64k', // a whole cluster…
    'write -z 3147776 4096', // …with two zero subclusters inside (3M + 2 KiB)
    'write -z 5M 64k', // a zero cluster with no host cluster
    `write -s ${pattern} 8M 200k`,
    'write -P 0x23 16775168 2048', // the last subcluster
  ]

  const extendedL2Writes2M = [
    'write -P 0x21 64k 64k',
    `write -s ${pattern} 2M 192k`,
    'write -z 2M 64k', // zero subcluster over data
    'write -P 0x22 6M 2M',
    'write -z 6400k 128k',
    'write -z 10M 2M',
    'write -P 0x23 32704k 64k',
  ]

  const cases: Record<string, Fixture> = {
    'compat 0.10, 64 KiB clusters': { sizeBytes: 16 * MiB, create: ['compat=0.10'] },
    'compat 0.10, 512 B clusters, zlib compressed': { sizeBytes: 8 * MiB, convert: { compress: true, options: ['compat=0.10', 'cluster_size=512'] } },
    'compat 1.1, 512 B clusters': { sizeBytes: 8 * MiB, create: ['cluster_size=512'] },
    'compat 1.1, 4 KiB clusters': { sizeBytes: 16 * MiB, create: ['cluster_size=4k'] },
    'compat 1.1, 64 KiB clusters, zero clusters plain and preallocated': {
      sizeBytes: 16 * MiB,
      writes: [...standardWrites(16 * MiB), 'write -z 3M 256k', 'write -z -u 4M 128k', 'write -z 12M 1M'],
    },
    'compat 1.1, 2 MiB clusters': { sizeBytes: 32 * MiB, create: ['cluster_size=2M'] },
    'virtual size 10 MiB + 512 bytes': { sizeBytes: 10 * MiB + 512, writes: [...standardWrites(10 * MiB + 512), `write -P 0x15 ${10 * MiB} 512`] },
    'zlib compressed, 64 KiB clusters': { sizeBytes: 16 * MiB, convert: { compress: true } },
    'zlib compressed, 4 KiB clusters': { sizeBytes: 16 * MiB, convert: { compress: true, options: ['cluster_size=4k'] } },
    'zlib compressed, 2 MiB clusters': { sizeBytes: 32 * MiB, convert: { compress: true, options: ['cluster_size=2M'] } },
    'zstd compressed, 64 KiB clusters': { sizeBytes: 16 * MiB, convert: { compress: true, options: ['compression_type=zstd'] } },
    'zstd compressed, 2 MiB clusters': { sizeBytes: 32 * MiB, convert: { compress: true, options: ['compression_type=zstd', 'cluster_size=2M'] } },
    'zstd compressed, 512 B clusters, odd size': {
      sizeBytes: 10 * MiB + 512,
      convert: { compress: true, options: ['compression_type=zstd', 'cluster_size=512'] },
    },
    'compressed and plain clusters mixed (write -c)': {
      sizeBytes: 16 * MiB,
      // Compressed writes go to unallocated clusters only; plain writes over some of them come after.
      writes: [
        'write -c -P 0x41 0 128k',
        `write -c -s ${pattern} 3M 1M`,
        `write -c -s ${pattern} 960k 128k`,
        'write -P 0x11 0 64k',
        'write -P 0x42 3200k 4k',
        `write -s ${pattern} 5M 1M`,
        'write -z 5M 64k',
      ],
    },
    'extended L2, 64 KiB clusters': { sizeBytes: 16 * MiB, create: ['extended_l2=on'], writes: extendedL2Writes64k },
    'extended L2, 2 MiB clusters': { sizeBytes: 32 * MiB, create: ['extended_l2=on', 'cluster_size=2M'], writes: extendedL2Writes2M },
    'extended L2, zlib compressed': {
      sizeBytes: 16 * MiB,
      create: ['extended_l2=on'],
      writes: extendedL2Writes64k,
      convert: { compress: true, options: ['extended_l2=on'] },
    },
    'preallocation=metadata': { sizeBytes: 16 * MiB, create: ['preallocation=metadata'] },
    'preallocation=falloc': { sizeBytes: 16 * MiB, create: ['preallocation=falloc'] },
    'preallocation=full': { sizeBytes: 16 * MiB, create: ['preallocation=full'] },
    'clusters allocated out of order': { sizeBytes: 16 * MiB, writes: standardWrites(16 * MiB).reverse() },
    'an internal snapshot, data changed after it': {
      sizeBytes: 16 * MiB,
      then: (file) => {
        qemuImg(['snapshot', '-c', 'before', file])
        qemuIo(file, ['write -P 0x77 2M 1M', 'write -z 6M 256k', 'write -P 0x78 9M 64k'])
      },
    },
    'the L1 table moved after the data (the image grown)': {
      sizeBytes: 16 * MiB,
      create: ['cluster_size=4k'],
      then: (file) => {
        qemuImg(['resize', '-q', file, String(24 * MiB)])
        qemuIo(file, ['write -P 0x79 20M 1M'])
      },
    },
    'the dirty bit set': { sizeBytes: 16 * MiB, then: (file) => { patchU64(file, 72, (v) => v | 1n) } },
    'no data at all': { sizeBytes: 64 * MiB, writes: [] },
    'zlib compressed, zero runs between compressed clusters (a cluster, 960 KiB, 1 MiB, 1 MiB + 64 KiB, 2 MiB)': {
      sizeBytes: 24 * MiB,
      // Zero runs of many sizes cut the runs of compressed clusters; the fill (0xa5) must not survive in any.
      writes: [
        `write -s ${pattern} 1M 1M`, 'write -z 1152k 64k', 'write -z 1600k 64k', // single zero clusters inside
        `write -s ${pattern} 2M 64k`, `write -s ${pattern} 3008k 64k`, // 960 KiB of zeros between
        `write -s ${pattern} 4096k 64k`, // 1 MiB of zeros between
        `write -s ${pattern} 5184k 64k`, // 1 MiB + 64 KiB between
        `write -s ${pattern} 7296k 3M`, // 2 MiB between
        'write -z 8M 64k', 'write -z 8256k 128k', 'write -z 9M 1M',
        `write -s ${pattern} 12M 5M`, // a batch longer than 4 MiB
        'write -P 0x31 24511k 1k',
      ],
      convert: { compress: true },
    },
  }

  return { cases, build }
}
