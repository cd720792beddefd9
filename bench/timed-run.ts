/**
 * Runs one contender as a `bash -c` script and measures it: the wall time from spawn to exit
 * (measured here, with hrtime), and the peak RSS of each process the script wraps with `timed()`
 * (GNU time's %M, one file per process), so a pipeline reports each of its processes on its own.
 */
import { spawn } from 'node:child_process'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'

export const GNU_TIME = '/usr/bin/time'

const MAX_CAPTURED_CHARS = 64 * 1024 // 64 KiB of stdout/stderr kept per run

/** Single-quotes `text` for bash. */
export function shq (text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`
}

/** The prefix that makes GNU time record the peak RSS (KiB) of the command after it, as `name`. */
export function timed (runDir: string, name: string): string {
  return `${GNU_TIME} -f %M -o ${shq(join(runDir, `rss-${name}`))}`
}

export interface ProcessPeak {
  name: string
  peakRssKiB: number
}

export interface TimedRun {
  wallMs: number
  exitCode: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** One per `timed()` process that reported, largest first. */
  processes: ProcessPeak[]
}

export interface TimedRunOptions {
  /** Empty directory for this run's RSS files and outputs. */
  runDir: string
  cwd: string
  timeoutMs: number
}

function keepTail (text: string, more: string): string {
  const joined = text + more
  return joined.length > MAX_CAPTURED_CHARS ? joined.slice(-MAX_CAPTURED_CHARS) : joined
}

/** GNU time writes "Command exited with non-zero status N" (or a signal line) before %M: the last line is the figure. */
function parseRss (text: string): number | undefined {
  const last = text.trim().split('\n').pop()?.trim() ?? ''
  const kib = Number(last)
  return /^\d+$/.test(last) && Number.isSafeInteger(kib) ? kib : undefined
}

export async function runTimed (script: string, options: TimedRunOptions): Promise<TimedRun> {
  const startedAt = process.hrtime.bigint()
  // Its own process group, so a timeout can stop the whole pipeline by the group's id.
  const child = spawn('bash', ['-c', script], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (text: string) => { stdout = keepTail(stdout, text) })
  child.stderr.setEncoding('utf8').on('data', (text: string) => { stderr = keepTail(stderr, text) })
  const timer = setTimeout(() => {
    if (child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }, options.timeoutMs)
  const { exitCode, signal } = await new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, sig) => resolve({ exitCode: code, signal: sig }))
  }).finally(() => clearTimeout(timer))
  const wallMs = Number(process.hrtime.bigint() - startedAt) / 1e6

  const processes: ProcessPeak[] = []
  for (const file of await fs.readdir(options.runDir)) {
    if (!file.startsWith('rss-')) continue
    const peakRssKiB = parseRss(await fs.readFile(join(options.runDir, file), 'utf8'))
    if (peakRssKiB !== undefined) processes.push({ name: file.slice('rss-'.length), peakRssKiB })
  }
  processes.sort((a, b) => b.peakRssKiB - a.peakRssKiB)
  return { wallMs, exitCode, signal, stdout, stderr, processes }
}
