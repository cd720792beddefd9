/**
 * `make bench`: installs a 2 GiB raw image served over loopback, with its sha512, with byoi-agent
 * (default and --stream) and with the shell pipelines that do the same job; prints a table and
 * rewrites docs/benchmarks.md. Not a test: nothing here asserts on time.
 */
import { execFile } from 'node:child_process'
import { accessSync, constants, promises as fs } from 'node:fs'
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { prepareBenchFiles, recreateDisk, residentShare, warmImage, writePayload } from './bench-files.js'
import { aimsOf, renderMarkdown, renderTable, summarize, type BenchReport, type Machine, type RunRecord } from './bench-report.js'
import { contenders, type BenchContext, type Contender, type ContenderId } from './contenders.js'
import { compareDiskSamples } from './disk-samples.js'
import { startFileServer, type FileServer } from './file-server.js'
import { GNU_TIME, runTimed } from './timed-run.js'

const ROUNDS = 3
const RUN_TIMEOUT_MS = 180_000 // 3 min: far beyond any healthy run
const SHM_IMAGE = '/dev/shm/bench.img'

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

async function runOnce (contender: Contender, ctx: BenchContext, round: number): Promise<RunRecord> {
  const runDir = join(benchDir, 'runs', `${contender.id}-${round}`)
  await fs.rm(runDir, { recursive: true, force: true })
  await fs.mkdir(runDir, { recursive: true })
  await recreateDisk(ctx.files)
  let run
  try {
    run = await runTimed(contender.script(ctx, runDir), { runDir, cwd: root, timeoutMs: RUN_TIMEOUT_MS })
  } finally {
    await contender.cleanup?.(ctx)
  }
  let failure: string | undefined
  if (run.exitCode !== 0) {
    const stderrFiles = (await fs.readdir(runDir)).filter((f) => f.endsWith('stderr'))
    const stderr = (await Promise.all(stderrFiles.map(async (f) => await fs.readFile(join(runDir, f), 'utf8')))).join('').concat(run.stderr)
    failure = `exit ${run.exitCode ?? run.signal ?? '?'}: ${stderr.trim().split('\n').slice(-3).join(' ').slice(0, 300)}`
  }
  failure ??= await contender.check(ctx, run, runDir)
  if (failure === undefined && contender.writesDisk) {
    failure = await compareDiskSamples({ imagePath: ctx.files.imagePath, imageBytes: ctx.files.imageBytes, diskPath: ctx.files.diskPath, diskBytes: ctx.files.diskBytes, skipPartitionTables: contender.editsPartitionTables })
  }
  const top = run.processes[0]
  return { wallMs: run.wallMs, peakRssKiB: top?.peakRssKiB ?? Number.NaN, peakProcess: top?.name ?? '?', failure }
}

async function main (): Promise<number> {
  const startedAt = Date.now()
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

  const agentBuiltAtMs = await newestMtimeMs(join(root, 'dist', 'agent'))
  const machine = await describeMachine()
  if (machine.loadAverage > 0.5) console.error(`warning: load average ${machine.loadAverage.toFixed(2)}: other work on the machine will skew the figures`)
  const files = await prepareBenchFiles(benchDir)
  let server: FileServer | undefined
  const stopOnSignal = (signal: NodeJS.Signals): void => {
    void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  }
  process.once('SIGINT', stopOnSignal)
  process.once('SIGTERM', stopOnSignal)

  const records = new Map<ContenderId, RunRecord[]>(contenders.map((c) => [c.id, []]))
  let imageResidentBefore: number | undefined
  try {
    server = await startFileServer({ script: serveScript, dir: benchDir, cwd: root })
    const imageUrl = `${server.baseUrl}/${files.imageName}`
    await writePayload(files, imageUrl)
    const ctx: BenchContext = { root, files, imageUrl, shmImagePath: SHM_IMAGE, agentMain, agentMemoryLimit: '3GiB' }
    console.error(`image ${files.imagePath} (${files.imageBytes} bytes${files.generated ? ', new' : ', reused'}), sha512 ${files.sha512Hex.slice(0, 16)}…, served at ${imageUrl}`)

    imageResidentBefore = await warmImage(files)
    console.error(`image in page cache: ${imageResidentBefore === undefined ? 'unknown' : `${(imageResidentBefore * 100).toFixed(0)} %`}`)

    for (let round = 1; round <= ROUNDS; round++) {
      for (const contender of contenders) {
        const record = await runOnce(contender, ctx, round)
        records.get(contender.id)?.push(record)
        const mibPerSecond = files.imageBytes / 1024 ** 2 / (record.wallMs / 1000)
        console.error(`round ${round}/${ROUNDS} ${contender.label}: ${(record.wallMs / 1000).toFixed(2)} s, ${mibPerSecond.toFixed(0)} MiB/s, peak RSS ${(record.peakRssKiB / 1024).toFixed(1)} MiB (${record.peakProcess})${record.failure === undefined ? '' : `  FAILED: ${record.failure}`}`)
      }
    }
  } finally {
    await server?.stop()
    await fs.rm(SHM_IMAGE, { force: true })
    await fs.rm(files.diskPath, { force: true })
  }

  const rebuilt = (await newestMtimeMs(join(root, 'dist', 'agent'))) !== agentBuiltAtMs
  if (rebuilt) console.error('warning: dist/agent/ changed during the bench: the agent runs did not all run the same build')
  const summaries = contenders.map((c) => summarize(c, records.get(c.id) ?? [], files.imageBytes))
  const report: BenchReport = {
    machine,
    imageBytes: files.imageBytes,
    roundsPerContender: ROUNDS,
    summaries,
    aims: aimsOf(summaries, files.imageBytes),
    imageResidentBefore,
    imageResidentAfter: await residentShare(files.imagePath),
    loadAverageEnd: loadavg()[0] ?? Number.NaN,
    agentRebuiltDuringRuns: rebuilt,
    totalSeconds: (Date.now() - startedAt) / 1000,
  }
  console.log(renderTable(report))
  const docPath = join(root, 'docs', 'benchmarks.md')
  await fs.writeFile(docPath, renderMarkdown(report))
  console.error(`wrote ${docPath}`)
  const failed = summaries.filter((s) => s.failures.length > 0)
  if (failed.length > 0) {
    console.error(`checks failed for: ${failed.map((s) => s.contender.label).join(', ')}`)
    return 1
  }
  return 0
}

process.exitCode = await main()
