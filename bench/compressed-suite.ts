/**
 * The compressed-raw suite (issue 13): the qcow2 suite's 2 GiB guest (compressible data, zero runs,
 * an empty tail, under a GPT) compressed with `zstd -3` into a raw image, installed by byoi-agent
 * (streamed: decoded on its way to the disk; in memory: held compressed, verified, then decoded
 * onto the disk) against the shell pipeline that does the same job, `curl | tee >(sha512sum) |
 * zstd -d | dd`, and against zstd's own decoding of the local file onto the disk (no download, no
 * hash: the decoding and writing floor).
 */
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { cachedSha512, DISK_BYTES, writeInstallPayload } from './bench-files.js'
import { fixed, findSummary, gib, percent, ratio, type Aim, type ContenderSummary, type SuiteText } from './bench-report.js'
import { agentContender, checkSumFile, type Contender, type DiskUnderTest } from './contender.js'
import { GUEST_BYTES, prepareGuest } from './qcow2-suite.js'
import type { PreparedSuite, Suite, SuiteEnv } from './suite.js'
import { shq, timed } from './timed-run.js'

const run = promisify(execFile)
const MIB = 1024 * 1024
const AGENT_MEMORY_LIMIT = '3GiB'
const ZSTD_LEVEL = 3 // zstd's default

/** guest.raw.zst beside the guest, made again when older than it. */
async function prepareZst (guestPath: string): Promise<{ path: string; bytes: number; sha512Hex: string }> {
  const path = `${guestPath}.zst`
  const [guest, existing] = await Promise.all([fs.stat(guestPath), fs.stat(path).catch(() => undefined)])
  if (existing === undefined || existing.mtimeMs < guest.mtimeMs) {
    console.error(`zstd -${ZSTD_LEVEL} ${guestPath} → ${path}…`)
    await run('zstd', ['-q', '-f', `-${ZSTD_LEVEL}`, '-T0', guestPath, '-o', `${path}.partial`])
    await fs.rename(`${path}.partial`, path)
  }
  return { path, bytes: (await fs.stat(path)).size, sha512Hex: await cachedSha512(path) }
}

function aims (summaries: ContenderSummary[]): Aim[] {
  const streamVsPipe = ratio(summaries, 'agent-stream', 'pipe')
  const streamRss = findSummary(summaries, 'agent-stream')?.peakRssMiB ?? Number.NaN
  return [
    { text: 'agent --stream vs (a) curl | tee >(sha512sum) | zstd -d | dd: ratio ≥ 1.0', measured: `×${fixed(streamVsPipe, 2)}`, met: streamVsPipe >= 1 },
    { text: 'agent --stream peak RSS ≤ 200 MiB', measured: `${fixed(streamRss, 0)} MiB`, met: streamRss <= 200 },
  ]
}

function ratioText (summaries: ContenderSummary[], id: string): string {
  if (!id.startsWith('agent-')) return ''
  return `×${fixed(ratio(summaries, id, 'pipe'), 2)} vs (a), ×${fixed(ratio(summaries, id, 'zstd-floor'), 2)} vs (b)`
}

function text (zstBytes: number): SuiteText {
  return {
    id: 'compressed',
    title: 'Compressed raw images (zstd)',
    summary: [
      `Installing a zstd-compressed raw image (${fixed(zstBytes / MIB, 0)} MiB) of the qcow2 suite's ${gib(GUEST_BYTES)} guest, served over`,
      'loopback with the sha512 of the compressed file: byoi-agent against the shell pipeline that decodes and verifies it.',
    ],
    measured: ({ rounds, residentBefore, residentAfter }) => [
      `- The file: \`zstd -${ZSTD_LEVEL} -T0\` of the qcow2 suite's guest (generated once into build/bench/, reused), its sha512`,
      '  from `sha512sum`; the agent gets an OVH `install/start` payload (`imageType: raw`, the compressed file\'s sha512).',
      '- (a) verifies and decodes as the agent does, in one pipeline; (b) decodes the local file onto the disk (no download,',
      '  no hash): the floor of decoding and writing with zstd\'s own tool.',
      `- The disk: a ${gib(DISK_BYTES)} sparse file, created again (then \`sync\`) before every run; every contender ends with`,
      '  `fdatasync` (dd `conv=fsync`, the agent\'s sync).',
      `- The page cache: the files are read once before the runs (residency then ${percent(residentBefore)}, after ${percent(residentAfter)}).`,
      `- Each contender runs ${rounds} times, interleaved. MiB/s counts the decoded bytes (${GUEST_BYTES / MIB} MiB) over the median`,
      '  wall time. Peak RSS is GNU time\'s `%M` around each process.',
      '- Every run is checked: the agent\'s `--json` result must be `done` with the file\'s sha512; (a)\'s sha512sum must print it;',
      '  after each run the disk\'s first MiB, a middle MiB and the guest\'s last MiB must equal the guest\'s (for the agent,',
      '  less the partition tables it rewrites).',
    ],
    reading: [
      '- The agent decodes with zstd-napi (libzstd, one thread) in 1 MiB pieces, each written before the next is decoded;',
      '  `zstd -d` decodes on its own thread while dd writes on another.',
      '- In memory mode the agent holds the compressed file (within its budget), verifies it, then decodes it onto the disk:',
      '  the decoding starts only after the download.',
    ],
    ratioText,
    aims,
  }
}

async function prepare (env: SuiteEnv): Promise<PreparedSuite> {
  await fs.mkdir(env.benchDir, { recursive: true })
  const guestPath = await prepareGuest(env.benchDir)
  const zst = await prepareZst(guestPath)
  const file = 'guest.raw.zst'
  const imageUrl = `${env.baseUrl}/${file}`
  const payloadPath = join(env.benchDir, 'payload-zst.json')
  await writeInstallPayload(payloadPath, { imageUrl, imageType: 'raw', sha512Hex: zst.sha512Hex })
  console.error(`compressed raw: ${zst.path} (${zst.bytes} bytes), sha512 ${zst.sha512Hex.slice(0, 16)}…`)
  const disk: DiskUnderTest = { path: join(env.benchDir, 'disk-zst.img'), sizeBytes: DISK_BYTES, referencePath: guestPath, referenceBytes: GUEST_BYTES }
  const ddTo = (runDir: string): string =>
    `${timed(runDir, 'dd')} dd of=${shq(disk.path)} bs=1M iflag=fullblock conv=fsync,notrunc 2> ${shq(join(runDir, 'dd.stderr'))}`
  const agent = (stream: boolean): Contender => agentContender({
    id: stream ? 'agent-stream' : 'agent-memory',
    label: stream ? 'byoi-agent --stream' : 'byoi-agent (default: held compressed in memory)',
    agentMain: env.agentMain,
    payloadPath,
    disk,
    memoryLimit: AGENT_MEMORY_LIMIT,
    stream,
    expected: { sha512Hex: zst.sha512Hex, bytes: zst.bytes, modeWords: stream ? 'while streaming' : 'from memory' },
  })
  const contenders: Contender[] = [
    {
      id: 'pipe',
      label: '(a) curl | tee >(sha512sum) | zstd -d | dd',
      shown: 'curl -sf URL | tee >(sha512sum > /tmp/x) | zstd -d -q | dd of=DISK bs=1M iflag=fullblock conv=fsync,notrunc',
      disk,
      editsPartitionTables: false,
      rssCovers: 'largest of curl, tee, sha512sum, zstd, dd',
      // tee's group waits for its process substitution: a pipeline does not, and the run must not end before the hash.
      script: (runDir) => [
        'set -o pipefail;',
        `${timed(runDir, 'curl')} curl -sf ${shq(imageUrl)}`,
        `| { ${timed(runDir, 'tee')} tee >(${timed(runDir, 'sha512sum')} sha512sum > ${shq(join(runDir, 'sum'))}); s=$?; wait $! && exit $s; }`,
        `| ${timed(runDir, 'zstd')} zstd -d -q`,
        `| ${ddTo(runDir)}`,
      ].join(' '),
      check: async (_run, runDir) => await checkSumFile(runDir, zst.sha512Hex),
    },
    {
      id: 'zstd-floor',
      label: '(b) zstd -d FILE | dd to DISK (decoding and writing, no download, no hash)',
      shown: 'zstd -d -q -c FILE | dd of=DISK bs=1M iflag=fullblock conv=fsync,notrunc',
      disk,
      editsPartitionTables: false,
      rssCovers: 'largest of zstd, dd',
      script: (runDir) => `set -o pipefail; ${timed(runDir, 'zstd')} zstd -d -q -c ${shq(zst.path)} | ${ddTo(runDir)}`,
      check: async () => undefined, // the disk samples say it all
    },
    agent(true),
    agent(false),
  ]
  return {
    text: text(zst.bytes),
    bytesPerRun: GUEST_BYTES,
    contenders,
    cachedFiles: [zst.path],
    cleanup: async () => { await fs.rm(disk.path, { force: true }) },
  }
}

export const compressedSuite: Suite = { id: 'compressed', prepare }
