/**
 * The capture suite (issue 14): a 2 GiB disk as a baked server leaves it (GPT; an ext4 filesystem
 * holding the qcow2 suite's compressible data, and as much again in files deleted since, whose
 * bytes stay in its free blocks), captured and uploaded to a local WebDAV server (nginx's PUT) by
 * byoi-agent (a zstd-compressed qcow2, a raw.zst, a plain qcow2) against the pipelines that do the
 * same job with the field's tools: `qemu-img convert -c` then `curl -T` (a zstd qcow2, free blocks
 * captured as they are), and `e2image -ra | zstd | curl -T` (the filesystem's used blocks only, as
 * a raw stream). Time, output size and peak RSS; the output size is compared with `qemu-img
 * convert -c` of the same disk once its free blocks were zeroed.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startWebDav, type WebDavServer } from '../test/helpers/webdav-server.js'
import { fixed, findSummary, gib, percent, type Aim, type ContenderSummary, type SuiteText } from './bench-report.js'
import type { Contender } from './contender.js'
import { prepareGuest } from './qcow2-suite.js'
import type { PreparedSuite, Suite, SuiteEnv } from './suite.js'
import { shq, timed } from './timed-run.js'

const run = promisify(execFile)
const MIB = 1024 * 1024
const DISK_BYTES = 2 * 1024 * MIB // 2 GiB
const PART_START = MIB
const PART_BYTES = DISK_BYTES - 2 * MIB
const KEPT_BYTES = 640 * MIB
const DELETED_BYTES = 640 * MIB
const FILE_BYTES = 16 * MIB

/** The disk (made once into build/bench/, reused) and the size of `qemu-img convert -c` of it with its free blocks zeroed. */
async function prepareDisk (benchDir: string, guestPath: string): Promise<{ path: string; zeroedQcow2Bytes: number }> {
  const path = join(benchDir, 'capture-disk.raw')
  const sizeFile = `${path}.zeroed-qcow2-bytes`
  const existing = await fs.stat(path).catch(() => undefined)
  const known = Number(await fs.readFile(sizeFile, 'utf8').catch(() => ''))
  if (existing?.size === DISK_BYTES && known > 0) return { path, zeroedQcow2Bytes: known }

  console.error(`making ${path}: GPT, ext4 with ${KEPT_BYTES / MIB} MiB of files and ${DELETED_BYTES / MIB} MiB deleted…`)
  const content = join(benchDir, 'capture-content')
  await fs.rm(content, { recursive: true, force: true })
  await fs.mkdir(join(content, 'kept'), { recursive: true })
  await fs.mkdir(join(content, 'deleted'), { recursive: true })
  const guest = await fs.open(guestPath, 'r')
  const piece = Buffer.alloc(FILE_BYTES)
  try {
    for (let i = 0; i < (KEPT_BYTES + DELETED_BYTES) / FILE_BYTES; i++) {
      // Slices of the qcow2 suite's guest: compressible data with zero runs, as files.
      await guest.read(piece, 0, FILE_BYTES, (i * FILE_BYTES) % (1024 * MIB))
      const dir = i * FILE_BYTES < KEPT_BYTES ? 'kept' : 'deleted'
      await fs.writeFile(join(content, dir, `f${i}.bin`), piece)
    }
  } finally {
    await guest.close()
  }
  const fsImage = join(benchDir, 'capture-part.img')
  await fs.rm(fsImage, { force: true })
  await fs.writeFile(fsImage, '')
  await fs.truncate(fsImage, PART_BYTES)
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', content, fsImage])
  const deleted = (await fs.readdir(join(content, 'deleted'))).map((name) => `rm /deleted/${name}`)
  const commands = join(benchDir, 'capture-debugfs.txt')
  await fs.writeFile(commands, `${deleted.join('\n')}\n`)
  await run('debugfs', ['-w', '-f', commands, fsImage])
  await fs.rm(content, { recursive: true, force: true })

  await fs.rm(path, { force: true })
  await fs.writeFile(path, '')
  await fs.truncate(path, DISK_BYTES)
  await run('sgdisk', ['-n', `1:${PART_START / 512}:+${PART_BYTES / MIB}M`, path])
  await run('dd', [`if=${fsImage}`, `of=${path}`, 'bs=4M', `seek=${PART_START}`, 'oflag=seek_bytes', 'conv=notrunc,sparse', 'status=none'])

  // The same disk, its free blocks zeroed: the GPT's sectors copied, the filesystem's used blocks by e2image.
  const zeroed = join(benchDir, 'capture-disk-zeroed.raw')
  await fs.rm(zeroed, { force: true })
  await fs.writeFile(zeroed, '')
  await fs.truncate(zeroed, DISK_BYTES)
  await run('dd', [`if=${path}`, `of=${zeroed}`, 'bs=1M', 'count=1', 'conv=notrunc', 'status=none'])
  const lastMiB = DISK_BYTES / MIB - 1
  await run('dd', [`if=${path}`, `of=${zeroed}`, 'bs=1M', `skip=${lastMiB}`, `seek=${lastMiB}`, 'count=1', 'conv=notrunc', 'status=none'])
  await run('e2image', ['-ra', '-o', String(PART_START), '-O', String(PART_START), path, zeroed])
  await fs.truncate(zeroed, DISK_BYTES)
  const zeroedQcow2 = join(benchDir, 'capture-disk-zeroed.qcow2')
  await run('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', zeroed, zeroedQcow2])
  const zeroedQcow2Bytes = (await fs.stat(zeroedQcow2)).size
  await Promise.all([fsImage, zeroed, zeroedQcow2, commands].map(async (file) => { await fs.rm(file, { force: true }) }))
  await fs.writeFile(sizeFile, `${zeroedQcow2Bytes}\n`)
  return { path, zeroedQcow2Bytes }
}

/** The output sizes each contender's runs left on the server, by contender id. */
type Sizes = Map<string, number[]>

function medianSize (sizes: Sizes, id: string): number {
  const list = [...(sizes.get(id) ?? [])].sort((a, b) => a - b)
  return list[Math.floor(list.length / 2)] ?? Number.NaN
}

function aims (summaries: ContenderSummary[], sizes: Sizes, zeroedQcow2Bytes: number): Aim[] {
  const fastestPipeline = Math.min(findSummary(summaries, 'qemu-img')?.medianMs ?? Infinity, findSummary(summaries, 'e2image')?.medianMs ?? Infinity)
  const result: Aim[] = []
  for (const id of ['agent-qcow2-zstd', 'agent-raw-zst']) {
    const agent = findSummary(summaries, id)
    const speed = agent === undefined ? Number.NaN : fastestPipeline / agent.medianMs
    result.push({ text: `${id} vs the fastest pipeline: ratio ≥ 1.0`, measured: `×${fixed(speed, 2)}`, met: speed >= 1 })
  }
  const size = medianSize(sizes, 'agent-qcow2-zstd')
  result.push({
    text: `agent-qcow2-zstd output ≤ qemu-img convert -c of the disk with its free blocks zeroed (${fixed(zeroedQcow2Bytes / MIB, 1)} MiB)`,
    measured: `${fixed(size / MIB, 1)} MiB (×${fixed(size / zeroedQcow2Bytes, 3)})`,
    met: size <= zeroedQcow2Bytes,
  })
  return result
}

function text (sizes: Sizes, zeroedQcow2Bytes: number): SuiteText {
  return {
    id: 'capture',
    title: 'Capture (a disk uploaded as an image)',
    summary: [
      `Capturing a ${gib(DISK_BYTES)} disk (GPT, one ext4 filesystem: ${KEPT_BYTES / MIB} MiB of files, ${DELETED_BYTES / MIB} MiB of files deleted`,
      'since, their bytes still in its free blocks) and uploading it to nginx\'s WebDAV PUT on loopback: byoi-agent against',
      '`qemu-img convert -c` + `curl -T` and `e2image -ra | zstd | curl -T`.',
    ],
    measured: ({ rounds, residentBefore, residentAfter }) => [
      '- The disk: made once into build/bench/ from slices of the qcow2 suite\'s guest (compressible data with zero runs) as',
      '  16 MiB files (`mke2fs -d`), half of them then removed (`debugfs rm`). Its reference: the same disk with its free blocks',
      `  zeroed (\`e2image -ra\`), \`qemu-img convert -c -O qcow2 -o compression_type=zstd\`: ${fixed(zeroedQcow2Bytes / MIB, 1)} MiB.`,
      '- (a) `qemu-img convert -c -O qcow2 -o compression_type=zstd DISK out.qcow2 && curl -T out.qcow2` (the free blocks',
      '  captured as they are: qemu-img does not read filesystems); (b) `e2image -ra -o 1MiB DISK - | zstd -3 | curl -T -` (the',
      '  filesystem alone, its used blocks, as a raw stream: not a whole disk, no partition table).',
      '- byoi-agent: `capture --format qcow2 --compress zstd` (clusters compressed, tables first: the scan compresses each',
      '  kept cluster to lay the file out, the upload compresses again), `--format raw --compress zstd` (one zstd frame), and',
      '  plain `--format qcow2`; each with `--checksum-type sha512` (the digest of the bytes sent).',
      `- The page cache: the disk is read once before the runs (residency then ${percent(residentBefore)}, after ${percent(residentAfter)}).`,
      `- Each contender runs ${rounds} times, interleaved; MiB/s counts the disk's bytes over the median wall time; peak RSS is`,
      '  GNU time\'s `%M` around each process; the output size is the file nginx stored (median).',
      '- Every run is checked: the file stored is whole (the agent\'s: its size and sha512 are the `--json` result\'s).',
    ],
    reading: [
      '- The agent leaves the deleted files\' blocks out (read from the filesystem\'s bitmaps), and its all-zero clusters;',
      '  qemu-img keeps every non-zero cluster, deleted data included; e2image keeps the used blocks but has no partition table.',
      '- Where the time goes: (b) spreads reading, compressing and sending over three processes on the 2 cores; the agent\'s',
      '  raw.zst reads, compresses (one zstd thread, on the main thread), hashes (sha512) and sends in one process; its qcow2',
      '  zstd compresses every kept cluster twice (once to lay the file out, once to send it) on two worker threads.',
    ],
    ratioText: (summaries, id) => {
      const size = medianSize(sizes, id)
      return Number.isFinite(size) ? `output ${fixed(size / MIB, 1)} MiB` : ''
    },
    aims: (summaries) => aims(summaries, sizes, zeroedQcow2Bytes),
  }
}

async function prepare (env: SuiteEnv): Promise<PreparedSuite> {
  await fs.mkdir(env.benchDir, { recursive: true })
  const guestPath = await prepareGuest(env.benchDir)
  const disk = await prepareDisk(env.benchDir, guestPath)
  const dav: WebDavServer = await startWebDav(join(env.benchDir, 'capture-dav'))
  const sizes: Sizes = new Map()
  const url = (name: string): string => `${dav.origin}/captures/${name}`
  const stored = (name: string): string => join(dav.root, 'captures', name)
  const token = `X-Upload-Token: ${dav.token}`
  const record = async (id: string, name: string): Promise<number | undefined> => {
    const size = (await fs.stat(stored(name)).catch(() => undefined))?.size
    if (size !== undefined) sizes.set(id, [...(sizes.get(id) ?? []), size])
    return size
  }
  // The stored file is checked after the run (the runner's cleanup comes before its check): each run removes its predecessor's first.
  const removeFirst = (name: string): string => `rm -f ${shq(stored(name))};`
  const pipelineCheck = (id: string, name: string) => async (): Promise<string | undefined> =>
    (await record(id, name)) === undefined ? `nothing stored at ${name}` : undefined

  const agent = (id: string, label: string, name: string, flags: string): Contender => ({
    id,
    label,
    shown: `node dist/agent/main.js capture --disk DISK --upload URL --header 'X-Upload-Token: …' ${flags} --checksum-type sha512 --json`,
    disk: undefined,
    editsPartitionTables: false,
    rssCovers: 'the node process',
    script: (runDir) => [
      removeFirst(name),
      `${timed(runDir, 'node')} ${shq(process.execPath)} ${shq(env.agentMain)} capture --disk ${shq(disk.path)}`,
      `--upload ${shq(url(name))} --header ${shq(token)} ${flags} --checksum-type sha512 --json`,
      `> ${shq(join(runDir, 'result.json'))} 2> ${shq(join(runDir, 'agent.stderr'))}`,
    ].join(' '),
    check: async (_run, runDir) => {
      const line = (await fs.readFile(join(runDir, 'result.json'), 'utf8').catch(() => '')).trim().split('\n').pop() ?? ''
      let result: { status?: unknown; bytes?: unknown; digest?: { hex?: unknown }; message?: unknown }
      try {
        result = JSON.parse(line) as typeof result
      } catch {
        return `no JSON result: ${JSON.stringify(line.slice(0, 200))}`
      }
      if (result.status !== 'done') return `status ${String(result.status)}: ${String(result.message)}`
      const size = await record(id, name)
      if (size !== result.bytes) return `stored ${String(size)} bytes, the result says ${String(result.bytes)}`
      const hex = createHash('sha512').update(await fs.readFile(stored(name))).digest('hex')
      return hex === result.digest?.hex ? undefined : 'the stored file\'s sha512 is not the result\'s'
    },
  })

  const contenders: Contender[] = [
    {
      id: 'qemu-img',
      label: '(a) qemu-img convert -c (zstd) && curl -T',
      shown: 'qemu-img convert -c -O qcow2 -o compression_type=zstd DISK out.qcow2 && curl -sf -T out.qcow2 -H TOKEN URL',
      disk: undefined,
      editsPartitionTables: false,
      rssCovers: 'largest of qemu-img, curl',
      script: (runDir) => [
        removeFirst('a.qcow2'),
        'set -e;',
        `${timed(runDir, 'qemu-img')} qemu-img convert -c -O qcow2 -o compression_type=zstd ${shq(disk.path)} ${shq(join(runDir, 'out.qcow2'))};`,
        `${timed(runDir, 'curl')} curl -sf -T ${shq(join(runDir, 'out.qcow2'))} -H ${shq(token)} ${shq(url('a.qcow2'))} -o /dev/null`,
      ].join(' '),
      check: pipelineCheck('qemu-img', 'a.qcow2'),
      // Its output file, once stored: the runs' folders are kept, the disk space is not.
      cleanup: async () => {
        const runs = join(env.benchDir, 'runs', 'capture')
        for (const dir of await fs.readdir(runs).catch(() => [])) {
          if (dir.startsWith('qemu-img-')) await fs.rm(join(runs, dir, 'out.qcow2'), { force: true })
        }
      },
    },
    {
      id: 'e2image',
      label: '(b) e2image -ra | zstd -3 | curl -T -',
      shown: 'e2image -ra -o 1048576 DISK - | zstd -3 -q | curl -sf -T - -H TOKEN URL',
      disk: undefined,
      editsPartitionTables: false,
      rssCovers: 'largest of e2image, zstd, curl',
      script: (runDir) => [
        removeFirst('b.raw.zst'),
        'set -o pipefail;',
        `${timed(runDir, 'e2image')} e2image -ra -o ${PART_START} ${shq(disk.path)} - 2> ${shq(join(runDir, 'e2image.stderr'))}`,
        `| ${timed(runDir, 'zstd')} zstd -3 -q`,
        `| ${timed(runDir, 'curl')} curl -sf -T - -H ${shq(token)} ${shq(url('b.raw.zst'))} -o /dev/null`,
      ].join(' '),
      check: pipelineCheck('e2image', 'b.raw.zst'),
    },
    agent('agent-qcow2-zstd', 'byoi-agent capture, qcow2 with zstd clusters', 'c.qcow2', '--format qcow2 --compress zstd'),
    agent('agent-raw-zst', 'byoi-agent capture, raw.zst', 'd.raw.zst', '--format raw --compress zstd'),
    agent('agent-qcow2', 'byoi-agent capture, plain qcow2', 'e.qcow2', '--format qcow2'),
  ]
  return {
    text: text(sizes, disk.zeroedQcow2Bytes),
    bytesPerRun: DISK_BYTES,
    contenders,
    cachedFiles: [disk.path],
    cleanup: async () => {
      await dav.close()
      await fs.rm(join(env.benchDir, 'capture-dav'), { recursive: true, force: true })
    },
  }
}

export const captureSuite: Suite = { id: 'capture', prepare }
