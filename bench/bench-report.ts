/**
 * The figures: per contender the median wall time as MiB/s and the largest peak RSS over its runs;
 * the ratios and aims; a text table for the terminal and docs/benchmarks.md. Pure functions.
 */
import type { Contender, ContenderId } from './contenders.js'

const MIB = 1024 * 1024

export interface RunRecord {
  wallMs: number
  /** KiB, and the process that reached it. */
  peakRssKiB: number
  peakProcess: string
  failure: string | undefined
}

export interface ContenderSummary {
  contender: Contender
  runs: RunRecord[]
  medianMs: number
  mibPerSecond: number
  peakRssMiB: number
  peakProcess: string
  failures: string[]
}

export interface Machine {
  date: string
  cpus: number
  cpuModel: string
  ramBytes: number
  node: string
  kernel: string
  filesystem: string
  /** 1-minute load average when the bench started: other work on the machine skews the figures. */
  loadAverage: number
}

export interface Aim {
  text: string
  measured: string
  met: boolean
}

export interface BenchReport {
  machine: Machine
  imageBytes: number
  roundsPerContender: number
  summaries: ContenderSummary[]
  aims: Aim[]
  imageResidentBefore: number | undefined
  imageResidentAfter: number | undefined
  /** 1-minute load average when the runs ended. */
  loadAverageEnd: number
  /** dist/agent/ changed while the bench ran (someone rebuilt it): the agent's figures mix two builds. */
  agentRebuiltDuringRuns: boolean
  totalSeconds: number
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

export function summarize (contender: Contender, runs: RunRecord[], imageBytes: number): ContenderSummary {
  const medianMs = median(runs.map((r) => r.wallMs))
  const peak = runs.reduce<RunRecord | undefined>((best, r) => (best === undefined || r.peakRssKiB > best.peakRssKiB ? r : best), undefined)
  return {
    contender,
    runs,
    medianMs,
    mibPerSecond: imageBytes / MIB / (medianMs / 1000),
    peakRssMiB: (peak?.peakRssKiB ?? Number.NaN) / 1024,
    peakProcess: peak?.peakProcess ?? '?',
    failures: runs.flatMap((r) => (r.failure === undefined ? [] : [r.failure])),
  }
}

function find (summaries: ContenderSummary[], id: ContenderId): ContenderSummary | undefined {
  return summaries.find((s) => s.contender.id === id)
}

function ratio (summaries: ContenderSummary[], id: ContenderId, baseline: ContenderId): number {
  const a = find(summaries, id)
  const b = find(summaries, baseline)
  return a === undefined || b === undefined ? Number.NaN : a.mibPerSecond / b.mibPerSecond
}

const fixed = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : '?')

export function aimsOf (summaries: ContenderSummary[], imageBytes: number): Aim[] {
  const memory = find(summaries, 'agent-memory')
  const stream = find(summaries, 'agent-stream')
  const memoryVsIpa = ratio(summaries, 'agent-memory', 'ipa')
  const streamVsHash = ratio(summaries, 'agent-stream', 'hash')
  const streamVsPipe = ratio(summaries, 'agent-stream', 'pipe')
  const memoryRssCap = imageBytes / MIB + 100
  const memoryRss = memory?.peakRssMiB ?? Number.NaN
  const streamRss = stream?.peakRssMiB ?? Number.NaN
  return [
    { text: 'agent default (memory) vs (a) ironic-python-agent way: ratio > 1.0', measured: `×${fixed(memoryVsIpa, 2)}`, met: memoryVsIpa > 1 },
    { text: 'agent --stream vs (c) sha512sum alone: ratio ≥ 0.9', measured: `×${fixed(streamVsHash, 2)}`, met: streamVsHash >= 0.9 },
    { text: 'agent --stream vs (b) curl | tee | dd: ratio > 1.0', measured: `×${fixed(streamVsPipe, 2)}`, met: streamVsPipe > 1 },
    { text: `agent default peak RSS ≤ image + 100 MiB (${memoryRssCap} MiB)`, measured: `${fixed(memoryRss, 0)} MiB`, met: memoryRss <= memoryRssCap },
    { text: 'agent --stream peak RSS < 150 MiB', measured: `${fixed(streamRss, 0)} MiB`, met: streamRss < 150 },
  ]
}

function ratioText (summaries: ContenderSummary[], id: ContenderId): string {
  if (id === 'agent-memory') return `×${fixed(ratio(summaries, id, 'ipa'), 2)} vs (a)`
  if (id === 'agent-stream') return `×${fixed(ratio(summaries, id, 'hash'), 2)} vs (c), ×${fixed(ratio(summaries, id, 'pipe'), 2)} vs (b)`
  return ''
}

function runsText (s: ContenderSummary): string {
  return s.runs.map((r) => fixed(r.wallMs / 1000, 2)).join(' / ')
}

function pad (cells: string[][]): string {
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length))) ?? []
  return cells.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}

export function renderTable (report: BenchReport): string {
  const rows = [['contender', 'runs (s)', 'median s', 'MiB/s', 'ratio', 'peak RSS MiB (process)', 'checks']]
  for (const s of report.summaries) {
    rows.push([
      s.contender.label,
      runsText(s),
      fixed(s.medianMs / 1000, 2),
      fixed(s.mibPerSecond, 0),
      ratioText(report.summaries, s.contender.id),
      `${fixed(s.peakRssMiB, 1)} (${s.peakProcess})`,
      s.failures.length === 0 ? 'ok' : `FAILED: ${s.failures[0] ?? ''}`,
    ])
  }
  const aims = report.aims.map((a) => [a.met ? 'met' : 'MISSED', a.text, a.measured])
  return `${pad(rows)}\n\n${pad(aims)}\n`
}

/** A Markdown table cell: a `|` inside would start the next cell. */
function cell (text: string): string {
  return text.replaceAll('|', '\\|')
}

function gib (bytes: number): string {
  return `${fixed(bytes / 1024 ** 3, 1)} GiB`
}

function percent (share: number | undefined): string {
  return share === undefined ? 'unknown' : `${fixed(share * 100, 0)} %`
}

export function renderMarkdown (report: BenchReport): string {
  const { machine: m } = report
  const lines: string[] = []
  const add = (...more: string[]): void => { lines.push(...more) }
  add(
    '# Benchmarks',
    '',
    '<!-- Written by `make bench` (bench/run-all.ts): edit the generator, not this file. -->',
    '',
    `Installing a ${gib(report.imageBytes)} raw image served over loopback, with its sha512 checksum, onto a`,
    'virtual disk: byoi-agent against the shell pipelines that do the same job, in one run of `make bench`.',
    '',
    '## What is measured',
    '',
    `- The image: ${report.imageBytes} random bytes (incompressible) under a GPT with one partition (\`sgdisk\`),`,
    '  so the agent runs every step of a real install (GPT moved to the disk\'s end, ConfigDrive partition',
    '  added). Generated once into build/bench/ and reused; its sha512 from `sha512sum`.',
    '  It is served by `node dist/scripts/serve-files.js build/bench --port 0`',
    '  on 127.0.0.1; the agent gets an OVH `install/start` payload (`imageURL`, `imageType: raw`,',
    '  `imageCheckSum`, `imageCheckSumType: sha512`).',
    '- The disk: build/bench/disk.img, a 3 GiB sparse file, deleted and created again (then `sync`) before',
    '  every run. Every writer ends with an fsync (`conv=fsync`, or the agent\'s own `fdatasync`).',
    '- The page cache: the image is read once before the runs and stays cached (its residency is checked',
    `  before and after: ${percent(report.imageResidentBefore)} and ${percent(report.imageResidentAfter)}), so every contender reads it from memory alike; it is never dropped`,
    '  between runs. The figures are therefore loopback HTTP + hashing + writing, not network or source-disk speed.',
    `- Each contender runs ${report.roundsPerContender} times, interleaved (round 1 of every contender, then round 2…).`,
    '  Wall time is from spawning the contender\'s `bash -c` to its exit; MiB/s is the image size over the',
    '  median wall time. Peak RSS is GNU time\'s `%M` (`/usr/bin/time`, Debian package `time`) around each',
    '  process separately, so a pipeline reports its largest process; the table gives the largest over the runs.',
    '- Every run is checked: the agent\'s `--json` result must be `done` with the expected sha512 (and say it',
    '  installed from memory, or while streaming); the pipelines\' sha512sum must print the expected digest;',
    '  after every run that wrote the disk, its first MiB, a middle MiB and the image\'s last MiB must equal the',
    '  image\'s (for the agent, less the sectors of the partition tables it rewrites), and the disk must keep',
    '  its 3 GiB; after the agent, `sgdisk --verify` must find no problem and `sgdisk --print` two partitions.',
    '',
    '| contender | command |',
    '| --- | --- |',
    ...report.summaries.map((s) => `| ${cell(s.contender.label)} | \`${cell(s.contender.shown)}\` |`),
    '',
    '## Machine',
    '',
    '| | |',
    '| --- | --- |',
    `| date | ${m.date} |`,
    `| CPUs (\`nproc\`) | ${m.cpus} (${m.cpuModel}) |`,
    `| RAM | ${gib(m.ramBytes)} |`,
    `| Node.js | ${m.node} |`,
    `| kernel | ${m.kernel} |`,
    `| filesystem of build/bench | ${m.filesystem} |`,
    `| load average (1 min) at start, at end | ${fixed(m.loadAverage, 2)}, ${fixed(report.loadAverageEnd, 2)} |`,
    '',
    '## Results',
    '',
    ...(report.agentRebuiltDuringRuns ? ['**Warning: dist/agent/ was rebuilt while the bench ran; the agent\'s runs mix two builds.**', ''] : []),
    '| contender | runs (s) | median (s) | MiB/s | ratio | peak RSS (MiB) | RSS of | checks |',
    '| --- | ---: | ---: | ---: | --- | ---: | --- | --- |',
    ...report.summaries.map((s) => `| ${cell(s.contender.label)} | ${runsText(s)} | ${fixed(s.medianMs / 1000, 2)} | ${fixed(s.mibPerSecond, 0)} | ${ratioText(report.summaries, s.contender.id)} | ${fixed(s.peakRssMiB, 1)} | ${s.peakProcess}; covers ${s.contender.rssCovers} | ${s.failures.length === 0 ? 'ok' : `**failed**: ${cell(s.failures[0] ?? '')}`} |`),
    '',
    '## Aims',
    '',
    '| aim | measured | met |',
    '| --- | ---: | --- |',
    ...report.aims.map((a) => `| ${cell(a.text)} | ${a.measured} | ${a.met ? 'yes' : '**no**'} |`),
    '',
    '## Reading the figures',
    '',
    '- (a) and the agent\'s default both hold the whole image in RAM before writing (tmpfs for (a), the',
    '  agent\'s heap for byoi-agent): both pay for 2 GiB of fresh memory pages, which costs far more in a VM',
    '  (where the host backs each page on first touch) than on bare metal.',
    '- (c) writes nothing: `--stream` against it measures what downloading and writing add to hashing.',
    '  (d) is the cost of the write and its fsync alone, for reference.',
    '- Every process here shares the machine\'s CPUs with the file server, as it would not in production.',
    '',
    `The whole bench took ${fixed(report.totalSeconds, 0)} s. Figures vary from run to run, more so on a`,
    'shared or virtual machine; they compare contenders on one machine, they promise nothing for another.',
    '',
  )
  return lines.join('\n')
}
