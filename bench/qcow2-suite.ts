/**
 * The qcow2 suite (issue 4's aims): a 2 GiB guest disk made of compressible data, zero runs and an
 * empty tail, under a GPT, converted by qemu-img into two qcow2 files (uncompressed, and zlib
 * compressed); each is installed by byoi-agent (through memory, and streamed over a budget far
 * smaller than the file), against
 * `qemu-img convert -O raw` of the same file onto the same disk, and against the
 * download-verify-convert order of ironic-python-agent.
 */
import { execFile } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { addGpt, cachedSha512, DISK_BYTES, generateImage, hasGpt, writeInstallPayload, type BlockFill } from './bench-files.js'
import { fixed, findSummary, gib, percent, ratio, type Aim, type ContenderSummary, type SuiteText } from './bench-report.js'
import { agentContender, checkSumFile, type Contender, type DiskUnderTest } from './contender.js'
import type { PreparedSuite, Suite, SuiteEnv } from './suite.js'
import { shq, timed } from './timed-run.js'

const run = promisify(execFile)
const MIB = 1024 * 1024

export const GUEST_BYTES = 2 * 1024 ** 3 // 2 GiB
/** The guest's data ends here; the rest is zeros (an empty tail, as a freshly built OS image has). */
const DATA_END = 1536 * MIB
const UNIT_BYTES = 64 * 1024 // 64 KiB: one qcow2 cluster at qemu-img's default size
const RANDOM_PER_UNIT = 16 * 1024 // incompressible part of each data unit
const ZERO_UNIT_EVERY = 8 // one unit in eight is all zeros (small holes among the data)
const TEXT_POOL_BYTES = 4 * MIB
const SHM_IMAGE = '/dev/shm/bench.qcow2'
const AGENT_MEMORY_LIMIT = '3GiB'
/** Far below either file: the agent streams it (its tables read first by Range), in bounded memory. */
const STREAM_MEMORY_LIMIT = '256MiB'
const STREAM_RSS_AIM_MIB = 200

/** Lower-case words from a fixed vocabulary of 2048, separated by spaces and newlines: text-like bytes for deflate. */
function textPool (): Buffer {
  const letters = 'etaoinshrdlucmfwypvbgkjqxz'
  const seed = Buffer.alloc(2048 * 10)
  randomFillSync(seed)
  const words: string[] = []
  for (let w = 0; w < 2048; w++) {
    const length = 2 + ((seed[w * 10] ?? 0) % 9)
    let word = ''
    for (let i = 0; i < length; i++) word += letters[Math.floor(((seed[w * 10 + 1 + i] ?? 0) / 256) ** 2 * letters.length)] ?? 'e'
    words.push(word)
  }
  const picks = Buffer.alloc(TEXT_POOL_BYTES / 2)
  randomFillSync(picks)
  const parts: string[] = []
  let size = 0
  for (let i = 0; size < TEXT_POOL_BYTES; i++) {
    const word = words[picks.readUInt16LE((i * 2) % (picks.length - 2)) % words.length] ?? 'a'
    const part = word + (i % 12 === 11 ? '\n' : ' ')
    parts.push(part)
    size += part.length
  }
  return Buffer.from(parts.join(''), 'latin1').subarray(0, TEXT_POOL_BYTES)
}

/** Per 64 KiB unit below DATA_END: 16 KiB of random bytes then 48 KiB of text, one unit in eight zeros; above it, a hole. */
function compressibleFill (): BlockFill {
  const pool = textPool()
  const picks = Buffer.alloc(4)
  return (block, offset) => {
    if (offset >= DATA_END) return false
    block.fill(0)
    for (let at = 0; at < block.length; at += UNIT_BYTES) {
      const unit = (offset + at) / UNIT_BYTES
      if (offset + at >= DATA_END || unit % ZERO_UNIT_EVERY === ZERO_UNIT_EVERY - 1) continue
      randomFillSync(block, at, RANDOM_PER_UNIT)
      randomFillSync(picks)
      const from = picks.readUInt32LE(0) % (pool.length - UNIT_BYTES)
      pool.copy(block, at + RANDOM_PER_UNIT, from, from + UNIT_BYTES - RANDOM_PER_UNIT)
    }
    return true
  }
}

interface Qcow2File {
  name: 'plain' | 'zlib'
  path: string
  fileBytes: number
  sha512Hex: string
  payloadPath: string
}

/** The guest (raw, the reference every disk is compared with), generated once and reused. */
export async function prepareGuest (dir: string): Promise<string> {
  const path = join(dir, 'guest.raw')
  const stat = await fs.stat(path).catch(() => undefined)
  if (stat?.size !== GUEST_BYTES) {
    console.error(`generating ${path}: ${GUEST_BYTES} bytes of compressible data, zero runs and an empty tail…`)
    await generateImage(path, GUEST_BYTES, compressibleFill())
  }
  if (!(await hasGpt(path))) await addGpt(path)
  return path
}

/** qemu-img's qcow2 of the guest (64 KiB clusters; `-c`: every cluster that deflate shrinks is stored compressed). */
async function prepareQcow2 (guestPath: string, name: Qcow2File['name'], payloadUrl: (file: string) => string): Promise<Qcow2File> {
  const dir = join(guestPath, '..')
  const file = `guest-${name}.qcow2`
  const path = join(dir, file)
  const [guest, existing] = await Promise.all([fs.stat(guestPath), fs.stat(path).catch(() => undefined)])
  if (existing === undefined || existing.mtimeMs < guest.mtimeMs) {
    console.error(`qemu-img convert ${name === 'zlib' ? '-c ' : ''}-O qcow2 → ${path}…`)
    const compress = name === 'zlib' ? ['-c', '-o', 'compression_type=zlib'] : []
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', ...compress, guestPath, `${path}.partial`])
    await fs.rename(`${path}.partial`, path)
  }
  const sha512Hex = await cachedSha512(path)
  const payloadPath = join(dir, `payload-${name}.json`)
  await writeInstallPayload(payloadPath, { imageUrl: payloadUrl(file), imageType: 'qcow2', sha512Hex })
  return { name, path, fileBytes: (await fs.stat(path)).size, sha512Hex, payloadPath }
}

function contendersFor (env: SuiteEnv, image: Qcow2File, disk: DiskUnderTest, imageUrl: string): Contender[] {
  const convert = (runDir: string, from: string): string =>
    `${timed(runDir, 'qemu-img')} qemu-img convert -n -t writeback -f qcow2 -O raw ${shq(from)} ${shq(disk.path)}`
  return [
    {
      id: `qemu-img-${image.name}`,
      label: `${image.name}: (a) qemu-img convert -O raw FILE DISK`,
      shown: 'qemu-img convert -n -t writeback -f qcow2 -O raw FILE DISK',
      disk,
      editsPartitionTables: false,
      rssCovers: 'qemu-img',
      script: (runDir) => convert(runDir, image.path),
      check: async () => undefined, // the disk samples say it all
    },
    {
      id: `ipa-${image.name}`,
      label: `${image.name}: (b) curl to tmpfs, sha512sum, qemu-img convert`,
      shown: 'curl -sf -o /dev/shm/bench.qcow2 URL && sha512sum /dev/shm/bench.qcow2 && ' +
        'qemu-img convert -n -t writeback -f qcow2 -O raw /dev/shm/bench.qcow2 DISK',
      disk,
      editsPartitionTables: false,
      rssCovers: `largest of curl, sha512sum, qemu-img (the file also fills ${fixed(image.fileBytes / MIB, 0)} MiB of tmpfs, in no RSS)`,
      script: (runDir) => [
        'set -o pipefail;',
        `${timed(runDir, 'curl')} curl -sf -o ${shq(SHM_IMAGE)} ${shq(imageUrl)}`,
        `&& ${timed(runDir, 'sha512sum')} sha512sum ${shq(SHM_IMAGE)} > ${shq(join(runDir, 'sum'))}`,
        `&& ${convert(runDir, SHM_IMAGE)}`,
      ].join(' '),
      check: async (_run, runDir) => await checkSumFile(runDir, image.sha512Hex),
      cleanup: async () => { await fs.rm(SHM_IMAGE, { force: true }) },
    },
    agentContender({
      id: `agent-${image.name}`,
      label: `${image.name}: byoi-agent`,
      agentMain: env.agentMain,
      payloadPath: image.payloadPath,
      disk,
      memoryLimit: AGENT_MEMORY_LIMIT,
      stream: false,
      expected: { sha512Hex: image.sha512Hex, bytes: image.fileBytes, modeWords: 'from memory' },
    }),
    agentContender({
      id: `agent-stream-${image.name}`,
      label: `${image.name}: byoi-agent streamed (budget ${STREAM_MEMORY_LIMIT})`,
      agentMain: env.agentMain,
      payloadPath: image.payloadPath,
      disk,
      memoryLimit: STREAM_MEMORY_LIMIT,
      stream: false,
      expected: { sha512Hex: image.sha512Hex, bytes: image.fileBytes, modeWords: 'while streaming' },
    }),
  ]
}

function text (images: Qcow2File[]): SuiteText {
  const describe = (image: Qcow2File): string => `${image.name} ${fixed(image.fileBytes / MIB, 0)} MiB`
  const aims = (summaries: ContenderSummary[]): Aim[] => images.flatMap((image) => {
    const speed = ratio(summaries, `agent-${image.name}`, `qemu-img-${image.name}`)
    const rss = findSummary(summaries, `agent-${image.name}`)?.peakRssMiB ?? Number.NaN
    const cap = image.fileBytes / MIB + 100
    const streamVsIpa = ratio(summaries, `agent-stream-${image.name}`, `ipa-${image.name}`)
    const streamVsQemu = ratio(summaries, `agent-stream-${image.name}`, `qemu-img-${image.name}`)
    const streamRss = findSummary(summaries, `agent-stream-${image.name}`)?.peakRssMiB ?? Number.NaN
    return [
      { text: `${image.name}: agent vs (a) qemu-img convert: ratio ≥ 1.0`, measured: `×${fixed(speed, 2)}`, met: speed >= 1 },
      { text: `${image.name}: agent peak RSS ≤ file + 100 MiB (${fixed(cap, 0)} MiB)`, measured: `${fixed(rss, 0)} MiB`, met: rss <= cap },
      { text: `${image.name}: streamed vs (b) the IPA way: ratio ≥ 1.5`, measured: `×${fixed(streamVsIpa, 2)}`, met: streamVsIpa >= 1.5 },
      { text: `${image.name}: streamed vs (a) qemu-img convert: ratio ≥ 0.5 (within 2×)`, measured: `×${fixed(streamVsQemu, 2)}`, met: streamVsQemu >= 0.5 },
      { text: `${image.name}: streamed peak RSS ≤ ${STREAM_RSS_AIM_MIB} MiB`, measured: `${fixed(streamRss, 0)} MiB`, met: streamRss <= STREAM_RSS_AIM_MIB },
    ]
  })
  const ratioText = (summaries: ContenderSummary[], id: string): string => {
    const name = /^agent-(?:stream-)?(.+)$/.exec(id)?.[1]
    if (name === undefined) return ''
    return `×${fixed(ratio(summaries, id, `qemu-img-${name}`), 2)} vs (a), ×${fixed(ratio(summaries, id, `ipa-${name}`), 2)} vs (b)`
  }
  return {
    id: 'qcow2',
    title: 'qcow2 images',
    summary: [
      `Installing a qcow2 image of a ${gib(GUEST_BYTES)} guest disk, served over loopback with its sha512 checksum, onto a`,
      `virtual disk (files: ${images.map(describe).join(', ')}): byoi-agent against qemu-img.`,
    ],
    measured: ({ rounds, residentBefore, residentAfter }) => [
      `- The guest: ${GUEST_BYTES} bytes under a GPT (\`sgdisk\`). Its first ${DATA_END / MIB} MiB are data in 64 KiB units of`,
      `  ${RANDOM_PER_UNIT / 1024} KiB random bytes then ${(UNIT_BYTES - RANDOM_PER_UNIT) / 1024} KiB of text ` +
        `(words of a 2048-word vocabulary), one unit in ${ZERO_UNIT_EVERY} all zeros;`,
      `  the last ${(GUEST_BYTES - DATA_END) / MIB} MiB are zeros. \`qemu-img convert -O qcow2\` makes the plain file (zero clusters left`,
      '  unallocated) and `qemu-img convert -c -O qcow2 -o compression_type=zlib` the zlib file (64 KiB clusters, deflate);',
      '  both are generated once into build/bench/ and reused, with their sha512 from `sha512sum`.',
      '- The agent gets an OVH `install/start` payload (`imageType: qcow2`, `imageCheckSum`, `imageCheckSumType: sha512`)',
      '  for the file on the loopback file server: with a 3 GiB budget the file goes through memory (downloaded and verified',
      `  before any write); with a ${STREAM_MEMORY_LIMIT} budget it is streamed (its tables read first by Range, the file once).`,
      `- The disk: a ${gib(DISK_BYTES)} sparse file, created again (then \`sync\`) before every run. qemu-img runs with \`-n\``,
      '  (the disk exists) and `-t writeback`: its default cache mode for the target (`unsafe`) never flushes, and every',
      '  contender must end with its data on the disk (qemu-img then `fdatasync`s as it closes; the agent `fdatasync`s).',
      `- The page cache: the files are read once before the runs (residency then ${percent(residentBefore)}, after ${percent(residentAfter)}).`,
      `- Each contender runs ${rounds} times, interleaved. MiB/s counts guest bytes (${GUEST_BYTES / MIB} MiB) over the median wall time,`,
      '  so the columns compare across the two files. Peak RSS is GNU time\'s `%M` around each process.',
      '- Every run is checked: the agent\'s `--json` result must be `done` with the file\'s sha512; (b)\'s sha512sum must print it;',
      '  after each run the disk\'s first MiB, a middle MiB and the guest\'s last MiB must equal the guest\'s (for the agent,',
      '  less the partition tables it rewrites) and the disk must keep its size; after the agent `sgdisk --verify` must be clean.',
    ],
    reading: [
      '- (a) reads a local file and neither downloads nor verifies: the agent does both on top of the conversion, and',
      '  writes nothing before the checksum matched: the download and the hash come first. Hashing the plain file alone',
      '  at sha512\'s speed here ((c) of the raw suite) takes longer than (a)\'s whole conversion, so the aim against (a)',
      '  cannot be met while the agent verifies first; (b), which does the same work in the same order, is the like-for-like.',
      '- Above the file, the agent\'s peak RSS holds node itself (~57 MiB with its modules), the batches in flight, and, for',
      '  zlib, the buffer each inflate of a cluster leaves, which V8 frees at its own pace (up to its 64 MiB allowance of',
      '  external memory).',
      '- The agent inflates zlib clusters of 64 KiB and more with zlib\'s async API on libuv\'s thread pool (4 threads, no',
      '  V8 isolate), smaller ones and zstd on a pool of 2 worker threads; qemu-img decompresses on its own thread pool.',
      `- Streamed (a ${STREAM_MEMORY_LIMIT} budget, far below either file): the header, L1 and L2 tables are read first with Range`,
      '  requests (a few, a few hundred KiB), then the file once, each cluster written to its guest offset as it arrives;',
      '  once the digest matched, the guest ranges no data backs are made zero (the disk read, written only where not zero).',
      '- The streamed zlib install\'s peak RSS over the plain one\'s is the inflate\'s garbage: each cluster inflated leaves a',
      '  64 KiB output buffer (32768 for this guest) that V8 frees when its external memory has grown enough, besides',
      '  the batches being decoded (4 of 4 MiB). Apart from this bench (`process.memoryUsage()` every 20 ms): ArrayBuffers',
      '  peak at 140 to 170 MiB against 88 for the plain file. On 2 worker threads (before) each held ~60 MiB: 313 to 325',
      '  MiB peak RSS against 250 to 267 on libuv\'s pool, the same time. A decoder that inflates into the batch\'s own',
      '  buffer (no allocation per cluster) would bring it to the plain file\'s.',
      '- Every process here shares the machine\'s CPUs with the file server, as it would not in production.',
    ],
    ratioText,
    aims,
  }
}

async function prepare (env: SuiteEnv): Promise<PreparedSuite> {
  await fs.mkdir(env.benchDir, { recursive: true })
  const guestPath = await prepareGuest(env.benchDir)
  const url = (file: string): string => `${env.baseUrl}/${file}`
  const images = [await prepareQcow2(guestPath, 'plain', url), await prepareQcow2(guestPath, 'zlib', url)]
  const disk: DiskUnderTest = { path: join(env.benchDir, 'disk-qcow2.img'), sizeBytes: DISK_BYTES, referencePath: guestPath, referenceBytes: GUEST_BYTES }
  for (const image of images) console.error(`qcow2 ${image.name}: ${image.path} (${image.fileBytes} bytes), sha512 ${image.sha512Hex.slice(0, 16)}…`)
  return {
    text: text(images),
    bytesPerRun: GUEST_BYTES,
    contenders: images.flatMap((image) => contendersFor(env, image, disk, url(`guest-${image.name}.qcow2`))),
    cachedFiles: [guestPath, ...images.map((i) => i.path)],
    cleanup: async () => {
      await fs.rm(SHM_IMAGE, { force: true })
      await fs.rm(disk.path, { force: true })
    },
  }
}

export const qcow2Suite: Suite = { id: 'qcow2', prepare }
