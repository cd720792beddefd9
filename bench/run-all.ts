/**
 * `make bench`: the bench suites, one after the other: raw (a 2 GiB raw image, both agent modes,
 * against the shell pipelines), qcow2 (2 GiB guests in plain and zlib qcow2, in memory and
 * streamed, against qemu-img), compressed (that guest as a zstd raw image, against zstd's pipeline)
 * and ranges (1 GiB from a server capping each connection, 1, 4 and 8 connections, against curl and aria2c), and capture
 * (a 2 GiB disk uploaded as an image to WebDAV, against qemu-img convert -c and e2image pipelines).
 * Prints a table per suite and rewrites its section of docs/benchmarks.md.
 * `--suite raw|qcow2|compressed|ranges|capture` (repeatable) runs only those. `--baseline DIR` (a checkout of another commit,
 * built) runs each agent contender twice per round, this build and that one, interleaved, and
 * prints an A/B table instead of rewriting the doc. Not a test: nothing here asserts on time.
 */
import { execFile } from 'node:child_process'
import { accessSync, constants, promises as fs } from 'node:fs'
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { recreateDisk, residentShare, warmFile } from './bench-files.js'
import { mergeSection, renderSection, renderTable, summarize, type ContenderSummary, type Machine, type RunRecord, type SuiteReport } from './bench-report.js'
import { BASELINE_SUFFIX, type Contender } from './contender.js'
import { compareDiskSamples } from './disk-samples.js'
import { startFileServer, type FileServer } from './file-server.js'
import { captureSuite } from './capture-suite.js'
import { compressedSuite } from './compressed-suite.js'
import { qcow2Suite } from './qcow2-suite.js'
import { rangesSuite } from './ranges-suite.js'
import { rawSuite } from './raw-suite.js'
import type { Suite, SuiteEnv } from './suite.js'
import { GNU_TIME, runTimed } from './timed-run.js'

const ROUNDS = 3
const RUN_TIMEOUT_MS = 180_000 // 3 min: far beyond any healthy run
const SUITES: readonly Suite[] = [rawSuite, qcow2Suite, compressedSuite, rangesSuite, captureSuite]

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..') // dist/bench/ → the repository
const benchDir = join(root, 'build', 'bench')

async function describeMachine (): Promise<Machine> {
  const filesystem = await promisify(execFile)('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '--target', benchDir])
    .then(({ stdout }) => stdout.trim().replace(/\s+/g, ' on '))
    .catch(() => 'unknown')
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    ramBytes: totalmem(),
    node: process.version,
    kernel: `Linux ${release()}`,
    filesystem,
    loadAverage: loadavg()[0] ?? Number.NaN,
  }
}

/** Newest modification time under dir: a rebuild of the agent during the bench shows here. */
async function newestMtimeMs (dir: string): Promise<number> {
  let newest = 0
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) newest = Math.max(newest, (await fs.stat(join(entry.parentPath, entry.name))).mtimeMs)
  }
  return newest
}

async function runOnce (contender: Contender, suiteId: string, round: number, bytesPerRun: number): Promise<RunRecord> {
  const runDir = join(benchDir, 'runs', suiteId, `${contender.id}-${round}`)
  await fs.rm(runDir, { recursive: true, force: true })
  await fs.mkdir(runDir, { recursive: true })
  if (contender.disk !== undefined) await recreateDisk(contender.disk.path, contender.disk.sizeBytes)
  let run
  try {
    run = await runTimed(contender.script(runDir), { runDir, cwd: root, timeoutMs: RUN_TIMEOUT_MS })
  } finally {
    await contender.cleanup?.()
  }
  let failure: string | undefined
  if (run.exitCode !== 0) {
    const stderrFiles = (await fs.readdir(runDir)).filter((f) => f.endsWith('stderr'))
    const stderr = (await Promise.all(stderrFiles.map(async (f) => await fs.readFile(join(runDir, f), 'utf8')))).join('').concat(run.stderr)
    failure = `exit ${run.exitCode ?? run.signal ?? '?'}: ${stderr.trim().split('\n').slice(-3).join(' ').slice(0, 300)}`
  }
  failure ??= await contender.check(run, runDir)
  if (failure === undefined && contender.disk !== undefined) {
    failure = await compareDiskSamples(contender.disk, { skipPartitionTables: contender.editsPartitionTables })
  }
  const top = run.processes[0]
  const record = { wallMs: run.wallMs, peakRssKiB: top?.peakRssKiB ?? Number.NaN, peakProcess: top?.name ?? '?', failure }
  const mibPerSecond = bytesPerRun / 1024 ** 2 / (record.wallMs / 1000)
  const failed = record.failure === undefined ? '' : `  FAILED: ${record.failure}`
  console.error(`round ${round}/${ROUNDS} ${contender.label}: ${(record.wallMs / 1000).toFixed(2)} s, ${mibPerSecond.toFixed(0)} MiB/s, ` +
    `peak RSS ${(record.peakRssKiB / 1024).toFixed(1)} MiB (${record.peakProcess})${failed}`)
  return record
}

/** `measure` (warming, or only reading, the page cache) on every path, one after the other: the smallest share, or undefined if any is unknown. */
async function leastResident (paths: string[], measure: (path: string) => Promise<number | undefined>): Promise<number | undefined> {
  const shares: Array<number | undefined> = []
  for (const path of paths) shares.push(await measure(path))
  return shares.some((share) => share === undefined) ? undefined : Math.min(1, ...shares as number[])
}

/** One suite: its files, its rounds, its report. True when every run's checks passed. */
async function runSuite (suite: Suite, env: SuiteEnv): Promise<boolean> {
  const startedAt = Date.now()
  const agentBuiltAtMs = await newestMtimeMs(join(root, 'dist', 'agent'))
  const machine = await describeMachine()
  if (machine.loadAverage > 0.5) console.error(`warning: load average ${machine.loadAverage.toFixed(2)}: other work on the machine will skew the figures`)
  const prepared = await suite.prepare(env)
  const baselineMain = env.baselineMain
  if (baselineMain !== undefined) prepared.contenders = prepared.contenders.flatMap((c) => c.withAgent === undefined ? [c] : [c, c.withAgent(baselineMain)])
  const records = new Map<string, RunRecord[]>(prepared.contenders.map((c) => [c.id, []]))
  let residentBefore: number | undefined
  try {
    residentBefore = await leastResident(prepared.cachedFiles, warmFile)
    console.error(`${suite.id}: files in page cache: ${residentBefore === undefined ? 'unknown' : `${(residentBefore * 100).toFixed(0)} %`}`)
    for (let round = 1; round <= ROUNDS; round++) {
      for (const contender of prepared.contenders) records.get(contender.id)?.push(await runOnce(contender, suite.id, round, prepared.bytesPerRun))
    }
  } finally {
    await prepared.cleanup()
  }
  const residentAfter = await leastResident(prepared.cachedFiles, residentShare)
  const rebuilt = (await newestMtimeMs(join(root, 'dist', 'agent'))) !== agentBuiltAtMs
  if (rebuilt) console.error('warning: dist/agent/ changed during the bench: the agent runs did not all run the same build')
  const summaries = prepared.contenders.map((c) => summarize(c, records.get(c.id) ?? [], prepared.bytesPerRun))
  const report: SuiteReport = {
    suite: prepared.text,
    machine,
    roundsPerContender: ROUNDS,
    summaries,
    aims: prepared.text.aims(summaries),
    imageResidentBefore: residentBefore,
    imageResidentAfter: residentAfter,
    loadAverageEnd: loadavg()[0] ?? Number.NaN,
    agentRebuiltDuringRuns: rebuilt,
    totalSeconds: (Date.now() - startedAt) / 1000,
  }
  console.log(renderTable(report))
  if (baselineMain !== undefined) {
    const table = renderAbTable(suite.id, summaries)
    console.log(table)
    await fs.writeFile(join(benchDir, `ab-${suite.id}.md`), `${table}\n`)
    console.error(`A/B against ${baselineMain}: wrote ${join(benchDir, `ab-${suite.id}.md`)}, the doc left as it was`)
    return summaries.every((s) => s.failures.length === 0)
  }
  const docPath = join(root, 'docs', 'benchmarks.md')
  const existing = await fs.readFile(docPath, 'utf8').catch(() => '')
  await fs.writeFile(docPath, mergeSection(existing, { id: suite.id, text: renderSection(report) }, SUITES.map((s) => s.id)))
  console.error(`wrote the ${suite.id} section of ${docPath}`)
  const failed = summaries.filter((s) => s.failures.length > 0)
  if (failed.length > 0) console.error(`checks failed for: ${failed.map((s) => s.contender.label).join(', ')}`)
  return failed.length === 0
}

/** Each agent contender against its baseline twin: medians with the spread (min–max) of the runs, the ratio, peak RSS. */
function renderAbTable (suiteId: string, summaries: ContenderSummary[]): string {
  const seconds = (ms: number): string => (ms / 1000).toFixed(2)
  const spread = (s: ContenderSummary): string => {
    const walls = s.runs.map((r) => r.wallMs)
    return `${seconds(s.medianMs)} (${seconds(Math.min(...walls))}–${seconds(Math.max(...walls))})`
  }
  const lines = [
    `| ${suiteId}: contender | this build: median s (min–max) | baseline: median s (min–max) | time ratio (this / baseline) | peak RSS MiB (this / baseline) |`,
    '| --- | --- | --- | --- | --- |',
  ]
  for (const now of summaries) {
    const before = summaries.find((s) => s.contender.id === `${now.contender.id}${BASELINE_SUFFIX}`)
    if (before === undefined) continue
    const ratio = `×${(now.medianMs / before.medianMs).toFixed(2)}`
    lines.push(`| ${now.contender.label} | ${spread(now)} | ${spread(before)} | ${ratio} | ${now.peakRssMiB.toFixed(0)} / ${before.peakRssMiB.toFixed(0)} |`)
  }
  return lines.join('\n')
}

async function main (): Promise<number> {
  const { values } = parseArgs({ options: { suite: { type: 'string', multiple: true }, baseline: { type: 'string' } } })
  const chosen = values.suite ?? SUITES.map((s) => s.id)
  const unknown = chosen.filter((id) => !SUITES.some((s) => s.id === id))
  if (unknown.length > 0) {
    console.error(`unknown suite ${unknown.join(', ')}: the suites are ${SUITES.map((s) => s.id).join(', ')}`)
    return 2
  }
  try {
    accessSync(GNU_TIME, constants.X_OK)
  } catch {
    console.error(`${GNU_TIME} is missing: install the Debian package \`time\` (make deps does).`)
    return 1
  }
  const agentMain = join(root, 'dist', 'agent', 'main.js')
  const serveScript = join(root, 'dist', 'scripts', 'serve-files.js')
  for (const built of [agentMain, serveScript]) {
    try {
      accessSync(built, constants.R_OK)
    } catch {
      console.error(`${built} is missing: run make build first.`)
      return 1
    }
  }
  await fs.mkdir(benchDir, { recursive: true })
  let server: FileServer | undefined
  const stopOnSignal = (signal: NodeJS.Signals): void => {
    void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  }
  process.once('SIGINT', stopOnSignal)
  process.once('SIGTERM', stopOnSignal)
  let ok = true
  try {
    server = await startFileServer({ script: serveScript, dir: benchDir, cwd: root })
    const baselineMain = values.baseline === undefined ? undefined : join(resolve(values.baseline), 'dist', 'agent', 'main.js')
    if (baselineMain !== undefined) accessSync(baselineMain, constants.R_OK)
    const env: SuiteEnv = { root, benchDir, baseUrl: server.baseUrl, agentMain, baselineMain }
    for (const suite of SUITES.filter((s) => chosen.includes(s.id))) ok = await runSuite(suite, env) && ok
  } finally {
    await server?.stop()
  }
  return ok ? 0 : 1
}

process.exitCode = await main()
