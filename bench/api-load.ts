/**
 * `make bench-api`: does answering the API slow the install down? A 1 GiB raw image (GPT, sha256)
 * is installed through the service onto a sparse file (in /dev/shm when there is one), served
 * from another process over loopback: with no load; with 50 pollers of GET /install/status
 * (autocannon, in a third process) at 1 and at 10 requests/s each, and as fast as answered; and
 * with 50 open event streams. Each round runs every condition once, the order turning round by
 * round; each loaded run is compared with the same round's unloaded run, and the median of those
 * differences is reported, with the agent's CPU time and page faults. The figures go into
 * docs/api.md between its bench-api markers. Not a test: nothing here asserts on time. Everything
 * runs on this machine (a control plane would not), so the load generator and the file server take
 * CPU from the agent.
 *
 * Every run starts from the same memory state. The agent runs in this process, and the last
 * install's 1 GiB of slabs, garbage but perhaps not yet collected, would otherwise decide the next
 * run's speed: when the allocator hands that memory out again the image costs ~15 000 page faults,
 * when it is fresh ~260 000, a few tenths of a second on a VM. And a fork write-protects every page
 * of the forking process: when each loaded run forked its load generator from here, its install
 * paid a fault for every page it reused, an unloaded run did not, and the load seemed to slow the
 * install by 10-20 % while answering it cost the agent ~1 % (a `sleep` child, no load at all, did
 * the same). So the load generator is forked once, before the first install, and driven through
 * its standard input; and before each run, whatever its condition, a full GC frees the last
 * install's memory (every run's slabs are then fresh, as in a freshly started agent's first
 * install) and the run waits 0.5 s.
 * Usage: node dist/bench/api-load.js [--image-mib N] [--rounds N] [--modes memory,stream] [--no-doc]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomFillSync } from 'node:crypto'
import { closeSync, createReadStream, existsSync, ftruncateSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { pino } from 'pino'
import { request } from 'undici'
import { buildApp } from '../agent/api/build-app.js'
import { JobRunner } from '../agent/service/job-runner.js'
import type { InstallStatus } from '../agent/service/job-status.js'
import { rewriteMarked } from '../scripts/doc-markers.js'
import type { PollerFigures } from './api-pollers.js'

const MiB = 1024 * 1024
const TOKEN = 'bench-token-0123456789abcdef'
const POLLERS = 50
const POLL_RATE = 10 // requests per second per poller
const START_TIMEOUT_MS = 20_000 // 20 s for a child process to be ready

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..') // dist/bench/ → the repository
const workDir = join(root, 'build', 'bench-api')

interface Condition {
  id: string
  label: string
  load: { kind: 'status' | 'events'; rate: number } | undefined
}

const CONDITIONS: Condition[] = [
  { id: 'baseline', label: 'no API load', load: undefined },
  { id: 'pollers-1', label: `${POLLERS} status pollers, 1 req/s each`, load: { kind: 'status', rate: 1 } },
  { id: 'pollers', label: `${POLLERS} status pollers, ${POLL_RATE} req/s each`, load: { kind: 'status', rate: POLL_RATE } },
  { id: 'flood', label: `${POLLERS} status pollers, flat out`, load: { kind: 'status', rate: 0 } },
  { id: 'events', label: `${POLLERS} event streams`, load: { kind: 'events', rate: 0 } },
]

interface Run {
  condition: string
  mode: 'memory' | 'stream'
  round: number
  seconds: number
  agentCpuSeconds: number
  agentPageFaults: number
  poller: PollerFigures | undefined
}

/** A full garbage collection, on demand (V8's `gc`, exposed at run time rather than by a node flag). */
function fullGc (): () => void {
  setFlagsFromString('--expose-gc')
  const gc: unknown = runInNewContext('gc')
  if (typeof gc !== 'function') throw new Error('V8 did not expose gc')
  const collect = gc as () => void
  return () => { collect() }
}

/** Time the pollers run before the install starts, and every run waits after its GC. */
const SETTLE_MS = 500

/** Waits until `output()`, from `from` on, matches `pattern`. */
async function outputMatch (output: () => string, from: number, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    const found = pattern.exec(output().slice(from))
    if (found !== null) return found
    if (Date.now() > deadline) throw new Error(`${what}: no answer within ${START_TIMEOUT_MS} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** A child process that prints a line matching `ready` once it is; its stdout is kept. */
async function startChild (args: string[], ready: RegExp): Promise<{
  child: ChildProcess
  match: RegExpExecArray
  output: () => string
  stop: () => Promise<string>
}> {
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] })
  let output = ''
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')}: not ready within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS)
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (text: string) => {
      output += text
      const found = ready.exec(output)
      if (found !== null) {
        clearTimeout(timer)
        resolve(found)
      }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${args.join(' ')} exited (${code})`)) })
  })
  const stop = async (): Promise<string> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGTERM')
    const timer = setTimeout(() => { if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL') }, 10_000)
    await exited
    clearTimeout(timer)
    return output
  }
  return { child, match, output: () => output, stop }
}

/** A random image with a GPT (sgdisk): one Linux partition from 1 MiB to the end. */
function makeImage (path: string, sizeBytes: number): void {
  const fd = openSync(path, 'w')
  const chunk = Buffer.alloc(16 * MiB)
  try {
    for (let at = 0; at < sizeBytes; at += chunk.length) {
      randomFillSync(chunk)
      writeSync(fd, chunk, 0, Math.min(chunk.length, sizeBytes - at), at)
    }
  } finally {
    closeSync(fd)
  }
  execFileSync('sgdisk', ['-o', '-n', '1:2048:0', '-t', '1:8300', path], { stdio: 'ignore' })
}

async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] ?? Number.NaN : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      'image-mib': { type: 'string', default: '1024' },
      rounds: { type: 'string', default: '3' },
      'no-doc': { type: 'boolean', default: false },
      modes: { type: 'string', default: 'memory,stream' },
    },
  })
  const imageBytes = Number(values['image-mib']) * MiB
  const rounds = Number(values.rounds)
  const modes = values.modes.split(',').filter((m): m is 'memory' | 'stream' => m === 'memory' || m === 'stream')
  rmSync(workDir, { recursive: true, force: true })
  mkdirSync(join(workDir, 'www'), { recursive: true })
  const imagePath = join(workDir, 'www', 'image.raw')
  // The machine's 1-minute load average before and after: other work on it shows in the spread.
  const loadBefore = loadavg()[0] ?? Number.NaN
  console.error(`making a ${imageBytes / MiB} MiB image…`)
  makeImage(imagePath, imageBytes)
  const digest = await sha256File(imagePath)
  // Read once so every run finds it in the page cache.
  await sha256File(imagePath)

  const files = await startChild(
    [join(root, 'dist', 'scripts', 'serve-files.js'), join(workDir, 'www'), '--port', '0'],
    /^listening (http:\/\/127\.0\.0\.1:\d+)\s*$/m,
  )
  const imageUrl = `${files.match[1] ?? ''}/image.raw`
  // The load generator, forked now, before this process (the agent) holds any image: see the top.
  const pollers = await startChild([join(root, 'dist', 'bench', 'api-pollers.js'), TOKEN, String(POLLERS)], /^waiting$/m)
  /** Sends the load generator a command and waits for its answer (a line matching `answer`) after it. */
  const tellPollers = async (command: string, answer: RegExp): Promise<RegExpExecArray> => {
    const from = pollers.output().length
    pollers.child.stdin?.write(`${command}\n`)
    return await outputMatch(pollers.output, from, answer, `api-pollers ${command}`)
  }
  // The target on tmpfs when there is one: the disk's own speed (and the writeback of the last
  // run) varies far more than anything the API does, and would hide it.
  const diskPath = existsSync('/dev/shm') ? '/dev/shm/byoi-bench-api-disk.img' : join(workDir, 'disk.img')
  const runs: Run[] = []
  const collectGarbage = fullGc()
  try {
    for (const mode of modes) {
      const runner = await JobRunner.open({
        disk: { path: diskPath, auto: false, sizeBytes: null, model: null },
        logger: pino({ level: 'warn' }),
        installOptions: { stream: mode === 'stream' },
      })
      const app = buildApp({ jobs: runner, token: TOKEN, logger: pino({ level: 'warn' }) })
      await app.listen({ host: '127.0.0.1', port: 0 })
      const address = app.server.address()
      const baseUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
      try {
        // One install first, not counted: JIT, page cache and the disk file's allocation warm up.
        for (let round = -1; round < rounds; round++) {
          // The order turns each round, so no condition always follows the same one.
          const order = round < 0 ? CONDITIONS.slice(0, 1) : [...CONDITIONS.slice(round % CONDITIONS.length), ...CONDITIONS.slice(0, round % CONDITIONS.length)]
          for (const condition of order) {
            // A fresh sparse disk twice the image's size.
            const fd = openSync(diskPath, 'w')
            ftruncateSync(fd, 2 * imageBytes)
            closeSync(fd)
            // Pollers run for a moment before the install starts, as they would. Event streams
            // open on `go`, just after it starts: opened before, they would get the last job's
            // result and end. Then the GC frees the last install's memory (see the top of this
            // file): every run, loaded or not, begins with fresh memory for its slabs, after the
            // same pause.
            const load = condition.load
            if (load !== undefined) await tellPollers(load.kind === 'status' ? `status ${baseUrl} ${load.rate}` : `events ${baseUrl}`, /^ready$/m)
            collectGarbage()
            await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
            const started = process.hrtime.bigint()
            const cpuBefore = process.cpuUsage()
            const faultsBefore = process.resourceUsage().minorPageFault
            const answer = await request(`${baseUrl}/install/start`, {
              method: 'POST',
              headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
              body: JSON.stringify({
                templateName: 'byoi_64',
                userMetadata: [
                  { key: 'imageURL', value: imageUrl },
                  { key: 'imageType', value: 'raw' },
                  { key: 'imageCheckSum', value: digest },
                  { key: 'imageCheckSumType', value: 'sha256' },
                ],
              }),
            })
            if (answer.statusCode !== 202) throw new Error(`install/start: HTTP ${answer.statusCode}: ${await answer.body.text()}`)
            await answer.body.dump()
            if (load?.kind === 'events') pollers.child.stdin?.write('go\n')
            await runner.idle()
            const seconds = Number(process.hrtime.bigint() - started) / 1e9
            const cpu = process.cpuUsage(cpuBefore)
            const agentCpuSeconds = (cpu.user + cpu.system) / 1e6
            const agentPageFaults = process.resourceUsage().minorPageFault - faultsBefore
            const status: InstallStatus = runner.status()
            const figures = load === undefined ? undefined : JSON.parse((await tellPollers('stop', /^\{.*\}$/m))[0]) as PollerFigures
            if (status.result?.code !== 'INSTALLED') throw new Error(`the install failed: ${status.result?.message ?? 'no result'}`)
            if (round >= 0) runs.push({ condition: condition.id, mode, round, seconds, agentCpuSeconds, agentPageFaults, poller: figures })
            const which = round < 0 ? 'warm-up' : `round ${round + 1}`
            const answered = figures === undefined
              ? ''
              : `, ${figures.requests} requests (${figures.requestsPerSecond}/s, p99 ${figures.latencyP99Ms ?? '-'} ms), ` +
                `${figures.events} events, ${figures.non2xx + figures.errors} failed`
            console.error(`${mode} ${condition.id} ${which}: ${seconds.toFixed(2)} s, ${(imageBytes / MiB / seconds).toFixed(0)} MiB/s, ` +
              `agent CPU ${agentCpuSeconds.toFixed(2)} s, ${agentPageFaults} page faults${answered}`)
          }
        }
      } finally {
        await runner.close()
        await app.close()
      }
    }
  } finally {
    pollers.child.stdin?.end()
    await pollers.stop()
    await files.stop()
    rmSync(diskPath, { force: true })
  }
  const markdown = report(runs, { imageBytes, rounds, modes, diskPath, loadBefore, loadAfter: loadavg()[0] ?? Number.NaN })
  process.stdout.write(`${markdown}\n`)
  if (!values['no-doc']) writeDoc(markdown)
  rmSync(workDir, { recursive: true, force: true })
}

function report (runs: Run[], options: {
  imageBytes: number
  rounds: number
  modes: string[]
  diskPath: string
  loadBefore: number
  loadAfter: number
}): string {
  const lines: string[] = []
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU'
  const date = new Date().toISOString().slice(0, 10)
  const onto = options.diskPath.startsWith('/dev/shm/')
    ? 'a sparse file in /dev/shm (tmpfs, so the disk\'s speed does not hide the API\'s cost)'
    : 'a sparse file'
  lines.push(`Measured ${date} on ${availableParallelism()} CPUs (${cpu}), ${Math.round(totalmem() / 1024 ** 3)} GiB RAM, Node ${process.version}: ` +
    `a ${options.imageBytes / MiB} MiB raw image with a GPT and a sha256, onto ${onto}; ` +
    `${options.rounds} rounds per condition after one warm-up install, the conditions' order turning each round; ` +
    'each loaded run is compared with the unloaded run of its round, and the median of those differences is given. ' +
    'The load generator is forked before the first install (never while the agent holds an image); ' +
    'before each run a full GC frees the last install\'s memory, so every run\'s slabs are fresh memory, ' +
    'as in a freshly started agent\'s first install, and each run starts 0.5 s later. ' +
    'The agent, the file server and the load each in their own process on the same machine; ' +
    `its load average was ${options.loadBefore.toFixed(1)} before and ${options.loadAfter.toFixed(1)} after ` +
    '(the bench itself keeps it near 2; above 0.5 before, other work was sharing the CPUs, which widens the spread of the rounds).')
  lines.push('')
  lines.push('| mode | condition | install (median) | throughput | vs. no load (median of rounds) | each round | ' +
    'agent CPU (median) | agent page faults (median) | API answered |')
  lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const mode of options.modes) {
    const baselineOf = new Map(runs.filter((r) => r.mode === mode && r.condition === 'baseline').map((r) => [r.round, r.seconds]))
    for (const condition of CONDITIONS) {
      const mine = runs.filter((r) => r.mode === mode && r.condition === condition.id)
      if (mine.length === 0) continue
      const seconds = median(mine.map((r) => r.seconds))
      // Each run against the baseline of its own round: the machine's drift over the rounds cancels.
      const ratios = mine.map((r) => (r.seconds / (baselineOf.get(r.round) ?? Number.NaN) - 1) * 100)
      const slower = median(ratios)
      const each = ratios.map((x) => `${x >= 0 ? '+' : ''}${x.toFixed(0)}`).join(', ')
      const pollers = mine.map((r) => r.poller).filter((p): p is PollerFigures => p !== undefined)
      const answered = condition.load === undefined
        ? '-'
        : condition.load.kind === 'events'
          ? `${Math.round(median(pollers.map((p) => p.events)))} events per run, ${pollers.reduce((n, p) => n + p.errors, 0)} failed`
          : `${Math.round(median(pollers.map((p) => p.requestsPerSecond)))} req/s, ` +
            `p99 ${median(pollers.map((p) => p.latencyP99Ms ?? 0))} ms, ${pollers.reduce((n, p) => n + p.non2xx + p.errors, 0)} failed`
      const baseline = condition.id === 'baseline'
      const agentCpu = median(mine.map((r) => r.agentCpuSeconds))
      const faults = median(mine.map((r) => r.agentPageFaults))
      const loadCpu = pollers.length === 0 ? '' : `; the load generator: ${median(pollers.map((p) => p.cpuSeconds)).toFixed(2)} s CPU`
      const cells = [
        mode,
        condition.label,
        `${seconds.toFixed(2)} s`,
        `${(options.imageBytes / MiB / seconds).toFixed(0)} MiB/s`,
        baseline ? '-' : `${slower >= 0 ? '+' : ''}${slower.toFixed(1)} %`,
        baseline ? '-' : `${each} %`,
        `${agentCpu.toFixed(2)} s`,
        `${Math.round(faults / 1000)}k`,
        `${answered}${loadCpu}`,
      ]
      lines.push(`| ${cells.join(' | ')} |`)
    }
  }
  return lines.join('\n')
}

function writeDoc (markdown: string): void {
  rewriteMarked(join(root, 'docs', 'api.md'), 'bench-api', markdown)
}

await main()
