/**
 * One thing the bench runs (a contender), as one bash script whose processes are wrapped by GNU
 * time (see timed-run.ts), and the checks its runs share: the sha512 a pipeline printed, the
 * agent's --json result, its GPT by sgdisk.
 */
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { shq, timed, type TimedRun } from './timed-run.js'

/** The disk a contender writes, and the raw bytes it must hold afterwards (sampled by disk-samples.ts). */
export interface DiskUnderTest {
  path: string
  sizeBytes: number
  /** A raw file whose first `referenceBytes` the disk must equal (the image, or qemu-img's conversion of it). */
  referencePath: string
  referenceBytes: number
}

export interface Contender {
  /** Unique within its suite; ratios and aims name contenders by it. */
  id: string
  label: string
  /** The command, for the doc (paths shortened). */
  shown: string
  /** The disk it writes, recreated before each run and sampled after it; undefined for a contender that writes none. */
  disk: DiskUnderTest | undefined
  /** Rewrites the partition tables (the agent: backup GPT to the disk's end, a ConfigDrive partition added). */
  editsPartitionTables: boolean
  /** Which processes the peak RSS covers. */
  rssCovers: string
  script: (runDir: string) => string
  /** Undefined when the run's result is right; else what is wrong. */
  check: (run: TimedRun, runDir: string) => Promise<string | undefined>
  /** After each run, outside the timed part. */
  cleanup?: () => Promise<void>
  /** The same contender run by another build of the agent (an A/B against `--baseline`): agent contenders only. */
  withAgent?: (agentMain: string) => Contender
}

/** The sha512sum line a pipeline wrote to runDir/sum must name `sha512Hex`. */
export async function checkSumFile (runDir: string, sha512Hex: string): Promise<string | undefined> {
  const text = await fs.readFile(join(runDir, 'sum'), 'utf8').catch(() => '')
  const hex = text.split(' ')[0]?.trim() ?? ''
  return hex === sha512Hex ? undefined : `sha512sum printed ${JSON.stringify(text.slice(0, 140))}, expected ${sha512Hex.slice(0, 16)}…`
}

export interface AgentExpectation {
  sha512Hex: string
  /** The bytes downloaded (the image file's size). */
  bytes: number
  /** Words the success message must hold: "from memory" or "while streaming". */
  modeWords: string
}

/** The agent's --json result: the last line of its standard output. */
export async function checkAgentResult (runDir: string, expected: AgentExpectation): Promise<string | undefined> {
  const text = await fs.readFile(join(runDir, 'result.json'), 'utf8').catch(() => '')
  const line = text.trim().split('\n').pop() ?? ''
  let result: unknown
  try {
    result = JSON.parse(line)
  } catch {
    return `no JSON result on standard output: ${JSON.stringify(text.slice(0, 300))}`
  }
  const { status, message, bytes, digest } = (result ?? {}) as {
    status?: unknown
    message?: unknown
    bytes?: unknown
    digest?: { type?: unknown; hex?: unknown } | null
  }
  if (status !== 'done') return `status ${String(status)}: ${String(message)}`
  if (digest?.type !== 'sha512' || digest.hex !== expected.sha512Hex) {
    return `digest ${JSON.stringify(digest)}, expected sha512 ${expected.sha512Hex.slice(0, 16)}…`
  }
  if (bytes !== expected.bytes) return `bytes ${String(bytes)}, expected ${expected.bytes}`
  // The default must really have gone through memory (not switched to streaming), and --stream must have streamed.
  if (typeof message !== 'string' || !message.includes(expected.modeWords)) return `the message does not say "${expected.modeWords}": ${String(message)}`
  return undefined
}

/** sgdisk as referee: the agent's GPT must verify clean and hold the image's partition and the ConfigDrive's. */
export async function checkAgentGpt (diskPath: string): Promise<string | undefined> {
  const sgdisk = async (...args: string[]): Promise<string> => {
    const { stdout } = await promisify(execFile)('sgdisk', [...args, diskPath])
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

export interface AgentRunOptions {
  id: string
  label: string
  /** node and dist/agent/main.js. */
  agentMain: string
  payloadPath: string
  disk: DiskUnderTest
  memoryLimit: string
  stream: boolean
  /** `--connections N` (default: the agent's own). */
  connections?: number
  expected: AgentExpectation
}

/** byoi-agent's CLI install, with --json, its result and GPT checked. */
export function agentContender (options: AgentRunOptions): Contender {
  const connections = options.connections === undefined ? '' : ` --connections ${options.connections}`
  const flags = `--memory-limit ${shq(options.memoryLimit)} --json${options.stream ? ' --stream' : ''}${connections}`
  return {
    id: options.id,
    label: options.label,
    shown: `node dist/agent/main.js install --payload P --disk DISK ${flags}`,
    disk: options.disk,
    editsPartitionTables: true,
    rssCovers: 'the node process',
    script: (runDir) => [
      `${timed(runDir, 'node')} ${shq(process.execPath)} ${shq(options.agentMain)} install`,
      `--payload ${shq(options.payloadPath)} --disk ${shq(options.disk.path)} ${flags}`,
      `> ${shq(join(runDir, 'result.json'))} 2> ${shq(join(runDir, 'agent.stderr'))}`,
    ].join(' '),
    check: async (_run, runDir) => await checkAgentResult(runDir, options.expected) ?? await checkAgentGpt(options.disk.path),
    withAgent: (agentMain) => agentContender({ ...options, agentMain, id: `${options.id}${BASELINE_SUFFIX}`, label: `${options.label} [baseline]` }),
  }
}

/** The id of a contender's twin run by the baseline build. */
export const BASELINE_SUFFIX = '-baseline'
