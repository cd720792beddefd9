/**
 * What the bench runs, each as one bash script whose processes are wrapped by GNU time (see
 * timed-run.ts), and how each run's result is checked. Every contender moves the same 2 GiB image.
 */
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { BenchFiles } from './bench-files.js'
import { shq, timed, type TimedRun } from './timed-run.js'

export type ContenderId = 'ipa' | 'pipe' | 'hash' | 'write' | 'agent-memory' | 'agent-stream'

export interface BenchContext {
  /** The repository: cwd of every run. */
  root: string
  files: BenchFiles
  imageUrl: string
  /** Where the ironic-python-agent-style contender downloads to (tmpfs). */
  shmImagePath: string
  agentMain: string
  /** The memory budget given to the agent, as the CLI takes it. */
  agentMemoryLimit: string
}

export interface Contender {
  id: ContenderId
  label: string
  /** The command, for the doc (paths shortened). */
  shown: string
  writesDisk: boolean
  /** Rewrites the partition tables (the agent: backup GPT to the disk's end, a ConfigDrive partition added). */
  editsPartitionTables: boolean
  /** Which processes the peak RSS covers. */
  rssCovers: string
  script: (ctx: BenchContext, runDir: string) => string
  /** Undefined when the run's result is right; else what is wrong. */
  check: (ctx: BenchContext, run: TimedRun, runDir: string) => Promise<string | undefined>
  /** After each run, outside the timed part. */
  cleanup?: (ctx: BenchContext) => Promise<void>
}

async function checkSumFile (ctx: BenchContext, runDir: string): Promise<string | undefined> {
  const text = await fs.readFile(join(runDir, 'sum'), 'utf8').catch(() => '')
  const hex = text.split(' ')[0]?.trim() ?? ''
  return hex === ctx.files.sha512Hex ? undefined : `sha512sum printed ${JSON.stringify(text.slice(0, 140))}, expected ${ctx.files.sha512Hex.slice(0, 16)}…`
}

/** The agent's --json result: the last line of its standard output. */
async function checkAgentResult (ctx: BenchContext, runDir: string, modeWords: string): Promise<string | undefined> {
  const text = await fs.readFile(join(runDir, 'result.json'), 'utf8').catch(() => '')
  const line = text.trim().split('\n').pop() ?? ''
  let result: unknown
  try {
    result = JSON.parse(line)
  } catch {
    return `no JSON result on standard output: ${JSON.stringify(text.slice(0, 300))}`
  }
  const { status, message, bytes, digest } = (result ?? {}) as { status?: unknown; message?: unknown; bytes?: unknown; digest?: { type?: unknown; hex?: unknown } | null }
  if (status !== 'done') return `status ${String(status)}: ${String(message)}`
  if (digest?.type !== 'sha512' || digest.hex !== ctx.files.sha512Hex) return `digest ${JSON.stringify(digest)}, expected sha512 ${ctx.files.sha512Hex.slice(0, 16)}…`
  if (bytes !== ctx.files.imageBytes) return `bytes ${String(bytes)}, expected ${ctx.files.imageBytes}`
  // The default must really have gone through memory (not switched to streaming), and --stream must have streamed.
  if (typeof message !== 'string' || !message.includes(modeWords)) return `the message does not say "${modeWords}": ${String(message)}`
  return undefined
}

/** sgdisk as referee: the agent's GPT must verify clean and hold the image's partition and the ConfigDrive's. */
async function checkAgentGpt (ctx: BenchContext): Promise<string | undefined> {
  const sgdisk = async (...args: string[]): Promise<string> => {
    const { stdout } = await promisify(execFile)('sgdisk', [...args, ctx.files.diskPath])
    return stdout
  }
  try {
    const verify = await sgdisk('--verify')
    if (!verify.includes('No problems found')) return `sgdisk --verify: ${verify.trim().replace(/\s+/g, ' ').slice(0, 200)}`
    const partitions = (await sgdisk('--print')).split('\n').filter((line) => /^\s+\d+\s+\d+\s+\d+/.test(line))
    if (partitions.length !== 2) return `sgdisk --print shows ${partitions.length} partitions, expected 2 (the image's and the ConfigDrive)`
  } catch (err) {
    return `sgdisk failed: ${err instanceof Error ? err.message.slice(0, 200) : String(err)}`
  }
  return undefined
}

function agentContender (id: 'agent-memory' | 'agent-stream'): Contender {
  const stream = id === 'agent-stream'
  return {
    id,
    label: stream ? 'byoi-agent --stream' : 'byoi-agent (default: memory)',
    shown: `node dist/agent/main.js install --payload P --disk DISK --memory-limit 3GiB --json${stream ? ' --stream' : ''}`,
    writesDisk: true,
    editsPartitionTables: true,
    rssCovers: 'the node process',
    script: (ctx, runDir) => [
      `${timed(runDir, 'node')} ${shq(process.execPath)} ${shq(ctx.agentMain)} install`,
      `--payload ${shq(ctx.files.payloadPath)} --disk ${shq(ctx.files.diskPath)}`,
      `--memory-limit ${shq(ctx.agentMemoryLimit)} --json${stream ? ' --stream' : ''}`,
      `> ${shq(join(runDir, 'result.json'))} 2> ${shq(join(runDir, 'agent.stderr'))}`,
    ].join(' '),
    check: async (ctx, _run, runDir) => await checkAgentResult(ctx, runDir, stream ? 'while streaming' : 'from memory') ?? await checkAgentGpt(ctx),
  }
}

export const contenders: Contender[] = [
  {
    id: 'ipa',
    label: '(a) ironic-python-agent way: curl to tmpfs, sha512sum, dd',
    shown: 'curl -sf -o /dev/shm/bench.img URL && sha512sum /dev/shm/bench.img && dd if=/dev/shm/bench.img of=DISK bs=1M conv=fsync,notrunc',
    writesDisk: true,
    editsPartitionTables: false,
    rssCovers: 'largest of curl, sha512sum, dd (the image also fills 2048 MiB of tmpfs, in no RSS)',
    script: (ctx, runDir) => [
      'set -o pipefail;',
      `${timed(runDir, 'curl')} curl -sf -o ${shq(ctx.shmImagePath)} ${shq(ctx.imageUrl)}`,
      `&& ${timed(runDir, 'sha512sum')} sha512sum ${shq(ctx.shmImagePath)} > ${shq(join(runDir, 'sum'))}`,
      `&& ${timed(runDir, 'dd')} dd if=${shq(ctx.shmImagePath)} of=${shq(ctx.files.diskPath)} bs=1M conv=fsync,notrunc 2> ${shq(join(runDir, 'dd.stderr'))}`,
    ].join(' '),
    check: async (ctx, _run, runDir) => await checkSumFile(ctx, runDir),
    cleanup: async (ctx) => { await fs.rm(ctx.shmImagePath, { force: true }) },
  },
  {
    id: 'pipe',
    label: '(b) curl | tee >(sha512sum) | dd',
    shown: 'curl -sf URL | tee >(sha512sum > /tmp/x) | dd of=DISK bs=1M iflag=fullblock conv=fsync,notrunc',
    writesDisk: true,
    editsPartitionTables: false,
    rssCovers: 'largest of curl, tee, sha512sum, dd',
    // tee's group waits for its process substitution: a pipeline does not, and the run must not end before the hash.
    script: (ctx, runDir) => [
      'set -o pipefail;',
      `${timed(runDir, 'curl')} curl -sf ${shq(ctx.imageUrl)}`,
      `| { ${timed(runDir, 'tee')} tee >(${timed(runDir, 'sha512sum')} sha512sum > ${shq(join(runDir, 'sum'))}); s=$?; wait $! && exit $s; }`,
      `| ${timed(runDir, 'dd')} dd of=${shq(ctx.files.diskPath)} bs=1M iflag=fullblock conv=fsync,notrunc 2> ${shq(join(runDir, 'dd.stderr'))}`,
    ].join(' '),
    check: async (ctx, _run, runDir) => await checkSumFile(ctx, runDir),
  },
  {
    id: 'hash',
    label: '(c) sha512sum IMAGE (the hashing floor)',
    shown: 'sha512sum IMAGE',
    writesDisk: false,
    editsPartitionTables: false,
    rssCovers: 'sha512sum',
    script: (ctx, runDir) => `${timed(runDir, 'sha512sum')} sha512sum ${shq(ctx.files.imagePath)} > ${shq(join(runDir, 'sum'))}`,
    check: async (ctx, _run, runDir) => await checkSumFile(ctx, runDir),
  },
  {
    id: 'write',
    label: '(d) dd IMAGE to DISK, fsync (the writing floor; reference only)',
    shown: 'dd if=IMAGE of=DISK bs=1M conv=fsync,notrunc',
    writesDisk: true,
    editsPartitionTables: false,
    rssCovers: 'dd',
    script: (ctx, runDir) => `${timed(runDir, 'dd')} dd if=${shq(ctx.files.imagePath)} of=${shq(ctx.files.diskPath)} bs=1M conv=fsync,notrunc 2> ${shq(join(runDir, 'dd.stderr'))}`,
    check: async () => undefined, // the disk samples say it all
  },
  agentContender('agent-memory'),
  agentContender('agent-stream'),
]
