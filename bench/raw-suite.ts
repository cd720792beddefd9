/**
 * The raw suite: a 2 GiB raw image of random bytes (under a GPT) with its sha512, installed by
 * byoi-agent in both modes, against the shell pipelines that do the same job (issue 3's aims).
 */
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { prepareBenchFiles, writeInstallPayload } from './bench-files.js'
import { fixed, findSummary, gib, percent, ratio, type Aim, type ContenderSummary, type SuiteText } from './bench-report.js'
import { agentContender, checkSumFile, type Contender, type DiskUnderTest } from './contender.js'
import type { PreparedSuite, Suite, SuiteEnv } from './suite.js'
import { shq, timed } from './timed-run.js'

const MIB = 1024 * 1024
const SHM_IMAGE = '/dev/shm/bench.img'
const AGENT_MEMORY_LIMIT = '3GiB'

/**
 * The agent's floors in this run: streaming, the hash and the write overlap, so the slower of (e)
 * and (d); in memory mode the write comes after the verify, so their sum. Agent time over floor
 * time, as a throughput ratio (1 = at the floor).
 */
function floorRatios (summaries: ContenderSummary[]): { stream: number; memory: number } {
  const median = (id: string): number => findSummary(summaries, id)?.medianMs ?? Number.NaN
  const hash = median('node-hash')
  const write = median('write')
  return {
    stream: Math.max(hash, write) / median('agent-stream'),
    memory: (hash + write) / median('agent-memory'),
  }
}

function aims (summaries: ContenderSummary[], imageBytes: number): Aim[] {
  const memoryVsIpa = ratio(summaries, 'agent-memory', 'ipa')
  const floors = floorRatios(summaries)
  const streamVsPipe = ratio(summaries, 'agent-stream', 'pipe')
  const memoryRssCap = imageBytes / MIB + 100
  const memoryRss = findSummary(summaries, 'agent-memory')?.peakRssMiB ?? Number.NaN
  const streamRss = findSummary(summaries, 'agent-stream')?.peakRssMiB ?? Number.NaN
  return [
    { text: 'agent default (memory) vs (a) ironic-python-agent way: ratio > 1.0', measured: `×${fixed(memoryVsIpa, 2)}`, met: memoryVsIpa > 1 },
    { text: 'agent --stream vs its floor, the slower of (e) and (d): ratio ≥ 0.85', measured: `×${fixed(floors.stream, 2)}`, met: floors.stream >= 0.85 },
    { text: 'agent default (memory) vs its floor, (e) + (d): ratio ≥ 0.7', measured: `×${fixed(floors.memory, 2)}`, met: floors.memory >= 0.7 },
    { text: 'agent --stream vs (b) curl | tee | dd: ratio > 1.0', measured: `×${fixed(streamVsPipe, 2)}`, met: streamVsPipe > 1 },
    { text: `agent default peak RSS ≤ image + 100 MiB (${memoryRssCap} MiB)`, measured: `${fixed(memoryRss, 0)} MiB`, met: memoryRss <= memoryRssCap },
    { text: 'agent --stream peak RSS < 150 MiB', measured: `${fixed(streamRss, 0)} MiB`, met: streamRss < 150 },
  ]
}

function ratioText (summaries: ContenderSummary[], id: string): string {
  const floors = floorRatios(summaries)
  if (id === 'agent-memory') return `×${fixed(ratio(summaries, id, 'ipa'), 2)} vs (a), ×${fixed(floors.memory, 2)} vs (e) + (d)`
  if (id === 'agent-stream') return `×${fixed(ratio(summaries, id, 'pipe'), 2)} vs (b), ×${fixed(floors.stream, 2)} vs max((e), (d))`
  return ''
}

function text (imageBytes: number): SuiteText {
  return {
    id: 'raw',
    title: 'Raw image',
    summary: [
      `Installing a ${gib(imageBytes)} raw image served over loopback, with its sha512 checksum, onto a`,
      'virtual disk: byoi-agent against the shell pipelines that do the same job.',
    ],
    measured: ({ rounds, residentBefore, residentAfter }) => [
      `- The image: ${imageBytes} random bytes (incompressible) under a GPT with one partition (\`sgdisk\`),`,
      '  so the agent runs every step of a real install (GPT moved to the disk\'s end, ConfigDrive partition',
      '  added). Generated once into build/bench/ and reused; its sha512 from `sha512sum`.',
      '  It is served by `node dist/scripts/serve-files.js build/bench --port 0`',
      '  on 127.0.0.1; the agent gets an OVH `install/start` payload (`imageURL`, `imageType: raw`,',
      '  `imageCheckSum`, `imageCheckSumType: sha512`).',
      '- The disk: build/bench/disk.img, a 3 GiB sparse file, deleted and created again (then `sync`) before',
      '  every run. Every writer ends with an fsync (`conv=fsync`, or the agent\'s own `fdatasync`).',
      '- The page cache: the image is read once before the runs and stays cached (its residency is checked',
      `  before and after: ${percent(residentBefore)} and ${percent(residentAfter)}), so every contender reads it from memory alike; it is never dropped`,
      '  between runs. The figures are therefore loopback HTTP + hashing + writing, not network or source-disk speed.',
      `- Each contender runs ${rounds} times, interleaved (round 1 of every contender, then round 2…).`,
      '  Wall time is from spawning the contender\'s `bash -c` to its exit; MiB/s is the image size over the',
      '  median wall time. Peak RSS is GNU time\'s `%M` (`/usr/bin/time`, Debian package `time`) around each',
      '  process separately, so a pipeline reports its largest process; the table gives the largest over the runs.',
      '- Every run is checked: the agent\'s `--json` result must be `done` with the expected sha512 (and say it',
      '  installed from memory, or while streaming); the pipelines\' sha512sum must print the expected digest;',
      '  after every run that wrote the disk, its first MiB, a middle MiB and the image\'s last MiB must equal the',
      '  image\'s (for the agent, less the sectors of the partition tables it rewrites), and the disk must keep',
      '  its 3 GiB; after the agent, `sgdisk --verify` must find no problem and `sgdisk --print` two partitions.',
    ],
    reading: [
      '- (a) and the agent\'s default both hold the whole image in RAM before writing (tmpfs for (a), the',
      '  agent\'s heap for byoi-agent): both pay for 2 GiB of fresh memory pages, which costs far more in a VM',
      '  (where the host backs each page on first touch) than on bare metal.',
      '- (e) is the agent\'s hashing floor: Node\'s own sha512 of the same bytes, read from the page cache in one',
      '  process (coreutils\' sha512sum, (c), is slower than Node\'s on some CPUs, so it is only a reference). (d) is',
      '  the write and its fsync alone. Streaming, the hash and the write overlap: `--stream`\'s floor is the slower of',
      '  (e) and (d). In memory mode the write follows the verify: its floor is (e) + (d). Both ratios are floor time',
      '  over agent time (1 = at the floor).',
      '- The agent hashes on a worker thread that reads the bytes where the download keeps them (shared memory:',
      '  the download\'s slabs, kept in memory or on their way to the disk), so each byte is copied once on the main thread. On 2 cores',
      '  with the file server beside it the run is CPU-bound: sha512 takes one core for as long as (c) runs, and the',
      '  main thread (HTTP, the copy, the writes), the kernel\'s socket and page-cache copies and the server share the other.',
      '- Above the image, the default mode\'s peak RSS holds node itself (its binary\'s mapped pages count, ~45 MiB),',
      '  the digest thread (~10 MiB) and socket chunks already copied but not yet freed: V8 frees them at its next full',
      '  collection, which a full GC at the download\'s end showed to be ~30 MiB (measured apart from this bench).',
      '- --stream\'s peak RSS (measured apart from this bench with `process.memoryUsage()` every 20 ms): V8\'s heap',
      '  (~47 MiB, most of it the young generation\'s room), the parallel download\'s window (4 connections: 5 parts of',
      '  8 MiB, reused), slabs waiting for the digest (at most 8 MiB: the download waits past that), 4 writes of 2 MiB',
      '  in flight, and socket chunks already copied, freed at V8\'s pace (ArrayBuffers swing between 10 and 50 MiB).',
      '  With --connections 1 (no window) the same install peaks at 146 to 153 MiB.',
      '- Every process here shares the machine\'s CPUs with the file server, as it would not in production.',
    ],
    ratioText,
    aims: (summaries) => aims(summaries, imageBytes),
  }
}

async function prepare (env: SuiteEnv): Promise<PreparedSuite> {
  const files = await prepareBenchFiles(env.benchDir)
  const imageUrl = `${env.baseUrl}/${files.imageName}`
  await writeInstallPayload(files.payloadPath, { imageUrl, imageType: 'raw', sha512Hex: files.sha512Hex })
  const source = `${files.imageBytes} bytes${files.generated ? ', new' : ', reused'}`
  console.error(`raw image ${files.imagePath} (${source}), sha512 ${files.sha512Hex.slice(0, 16)}…, served at ${imageUrl}`)
  const disk: DiskUnderTest = { path: files.diskPath, sizeBytes: files.diskBytes, referencePath: files.imagePath, referenceBytes: files.imageBytes }
  const sumCheck = async (runDir: string): Promise<string | undefined> => await checkSumFile(runDir, files.sha512Hex)
  const ddTo = (runDir: string, from: string): string =>
    `${timed(runDir, 'dd')} dd${from} of=${shq(disk.path)} bs=1M conv=fsync,notrunc 2> ${shq(join(runDir, 'dd.stderr'))}`
  const agent = (stream: boolean): Contender => agentContender({
    id: stream ? 'agent-stream' : 'agent-memory',
    label: stream ? 'byoi-agent --stream' : 'byoi-agent (default: memory)',
    agentMain: env.agentMain,
    payloadPath: files.payloadPath,
    disk,
    memoryLimit: AGENT_MEMORY_LIMIT,
    stream,
    expected: { sha512Hex: files.sha512Hex, bytes: files.imageBytes, modeWords: stream ? 'while streaming' : 'from memory' },
  })
  const contenders: Contender[] = [
    {
      id: 'ipa',
      label: '(a) ironic-python-agent way: curl to tmpfs, sha512sum, dd',
      shown: 'curl -sf -o /dev/shm/bench.img URL && sha512sum /dev/shm/bench.img && dd if=/dev/shm/bench.img of=DISK bs=1M conv=fsync,notrunc',
      disk,
      editsPartitionTables: false,
      rssCovers: 'largest of curl, sha512sum, dd (the image also fills 2048 MiB of tmpfs, in no RSS)',
      script: (runDir) => [
        'set -o pipefail;',
        `${timed(runDir, 'curl')} curl -sf -o ${shq(SHM_IMAGE)} ${shq(imageUrl)}`,
        `&& ${timed(runDir, 'sha512sum')} sha512sum ${shq(SHM_IMAGE)} > ${shq(join(runDir, 'sum'))}`,
        `&& ${ddTo(runDir, ` if=${shq(SHM_IMAGE)}`)}`,
      ].join(' '),
      check: async (_run, runDir) => await sumCheck(runDir),
      cleanup: async () => { await fs.rm(SHM_IMAGE, { force: true }) },
    },
    {
      id: 'pipe',
      label: '(b) curl | tee >(sha512sum) | dd',
      shown: 'curl -sf URL | tee >(sha512sum > /tmp/x) | dd of=DISK bs=1M iflag=fullblock conv=fsync,notrunc',
      disk,
      editsPartitionTables: false,
      rssCovers: 'largest of curl, tee, sha512sum, dd',
      // tee's group waits for its process substitution: a pipeline does not, and the run must not end before the hash.
      script: (runDir) => [
        'set -o pipefail;',
        `${timed(runDir, 'curl')} curl -sf ${shq(imageUrl)}`,
        `| { ${timed(runDir, 'tee')} tee >(${timed(runDir, 'sha512sum')} sha512sum > ${shq(join(runDir, 'sum'))}); s=$?; wait $! && exit $s; }`,
        `| ${ddTo(runDir, ' iflag=fullblock')}`,
      ].join(' '),
      check: async (_run, runDir) => await sumCheck(runDir),
    },
    {
      id: 'hash',
      label: '(c) sha512sum IMAGE (coreutils; reference only)',
      shown: 'sha512sum IMAGE',
      disk: undefined,
      editsPartitionTables: false,
      rssCovers: 'sha512sum',
      script: (runDir) => `${timed(runDir, 'sha512sum')} sha512sum ${shq(files.imagePath)} > ${shq(join(runDir, 'sum'))}`,
      check: async (_run, runDir) => await sumCheck(runDir),
    },
    {
      id: 'write',
      label: '(d) dd IMAGE to DISK, fsync (the writing floor)',
      shown: 'dd if=IMAGE of=DISK bs=1M conv=fsync,notrunc',
      disk,
      editsPartitionTables: false,
      rssCovers: 'dd',
      script: (runDir) => ddTo(runDir, ` if=${shq(files.imagePath)}`),
      check: async () => undefined, // the disk samples say it all
    },
    {
      id: 'node-hash',
      label: '(e) Node\'s sha512 of IMAGE in one process (the hashing floor)',
      shown: 'node dist/bench/hash-floor.js IMAGE',
      disk: undefined,
      editsPartitionTables: false,
      rssCovers: 'node',
      script: (runDir) =>
        `${timed(runDir, 'node')} node ${shq(join(env.root, 'dist/bench/hash-floor.js'))} ${shq(files.imagePath)} > ${shq(join(runDir, 'sum'))}`,
      check: async (_run, runDir) => await sumCheck(runDir),
    },
    agent(false),
    agent(true),
  ]
  return {
    text: text(files.imageBytes),
    bytesPerRun: files.imageBytes,
    contenders,
    cachedFiles: [files.imagePath],
    cleanup: async () => {
      await fs.rm(SHM_IMAGE, { force: true })
      await fs.rm(files.diskPath, { force: true })
    },
  }
}

export const rawSuite: Suite = { id: 'raw', prepare }
