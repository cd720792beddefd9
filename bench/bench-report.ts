/**
 * The figures: per contender the median wall time as MiB/s and the largest peak RSS over its runs;
 * the ratios and aims a suite defines; a text table for the terminal and a section of
 * docs/benchmarks.md per suite. Pure functions.
 */
import type { Contender } from './contender.js'

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
  /** 1-minute load average when the suite started: other work on the machine skews the figures. */
  loadAverage: number
}

export interface Aim {
  text: string
  measured: string
  met: boolean
}

/** What a suite says about itself in the doc, and how it judges its figures. */
export interface SuiteText {
  id: string
  /** The section's heading. */
  title: string
  /** The section's first paragraph. */
  summary: string[]
  /** Bullets under "What is measured", after the suite's files are known. */
  measured: (facts: { rounds: number; residentBefore: number | undefined; residentAfter: number | undefined }) => string[]
  /** Bullets under "Reading the figures". */
  reading: string[]
  /** The ratio column for one contender ('' for none). */
  ratioText: (summaries: ContenderSummary[], id: string) => string
  aims: (summaries: ContenderSummary[]) => Aim[]
}

export interface SuiteReport {
  suite: SuiteText
  machine: Machine
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

/** `bytesPerRun` is what MiB/s counts: the image's bytes, or a qcow2's guest (virtual) bytes. */
export function summarize (contender: Contender, runs: RunRecord[], bytesPerRun: number): ContenderSummary {
  const medianMs = median(runs.map((r) => r.wallMs))
  const peak = runs.reduce<RunRecord | undefined>((best, r) => (best === undefined || r.peakRssKiB > best.peakRssKiB ? r : best), undefined)
  return {
    contender,
    runs,
    medianMs,
    mibPerSecond: bytesPerRun / MIB / (medianMs / 1000),
    peakRssMiB: (peak?.peakRssKiB ?? Number.NaN) / 1024,
    peakProcess: peak?.peakProcess ?? '?',
    failures: runs.flatMap((r) => (r.failure === undefined ? [] : [r.failure])),
  }
}

export function findSummary (summaries: ContenderSummary[], id: string): ContenderSummary | undefined {
  return summaries.find((s) => s.contender.id === id)
}

/** Throughput of `id` over that of `baseline` (NaN when either is missing). */
export function ratio (summaries: ContenderSummary[], id: string, baseline: string): number {
  const a = findSummary(summaries, id)
  const b = findSummary(summaries, baseline)
  return a === undefined || b === undefined ? Number.NaN : a.mibPerSecond / b.mibPerSecond
}

export const fixed = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : '?')

function runsText (s: ContenderSummary): string {
  return s.runs.map((r) => fixed(r.wallMs / 1000, 2)).join(' / ')
}

function pad (cells: string[][]): string {
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length))) ?? []
  return cells.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}

export function renderTable (report: SuiteReport): string {
  const rows = [['contender', 'runs (s)', 'median s', 'MiB/s', 'ratio', 'peak RSS MiB (process)', 'checks']]
  for (const s of report.summaries) {
    rows.push([
      s.contender.label,
      runsText(s),
      fixed(s.medianMs / 1000, 2),
      fixed(s.mibPerSecond, 0),
      report.suite.ratioText(report.summaries, s.contender.id),
      `${fixed(s.peakRssMiB, 1)} (${s.peakProcess})`,
      s.failures.length === 0 ? 'ok' : `FAILED: ${s.failures[0] ?? ''}`,
    ])
  }
  const aims = report.aims.map((a) => [a.met ? 'met' : 'MISSED', a.text, a.measured])
  return `${report.suite.title}\n${pad(rows)}\n\n${pad(aims)}\n`
}

/** A Markdown table cell: a `|` inside would start the next cell. */
function cell (text: string): string {
  return text.replaceAll('|', '\\|')
}

export function gib (bytes: number): string {
  return `${fixed(bytes / 1024 ** 3, 1)} GiB`
}

export function percent (share: number | undefined): string {
  return share === undefined ? 'unknown' : `${fixed(share * 100, 0)} %`
}

/** One suite's section of docs/benchmarks.md, between its markers. */
export function renderSection (report: SuiteReport): string {
  const { machine: m, suite } = report
  const lines: string[] = [
    sectionStart(suite.id),
    `## ${suite.title}`,
    '',
    ...suite.summary,
    '',
    '### What is measured',
    '',
    ...suite.measured({ rounds: report.roundsPerContender, residentBefore: report.imageResidentBefore, residentAfter: report.imageResidentAfter }),
    '',
    '| contender | command |',
    '| --- | --- |',
    ...report.summaries.map((s) => `| ${cell(s.contender.label)} | \`${cell(s.contender.shown)}\` |`),
    '',
    '### Machine',
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
    '### Results',
    '',
    ...(report.agentRebuiltDuringRuns ? ['**Warning: dist/agent/ was rebuilt while the bench ran; the agent\'s runs mix two builds.**', ''] : []),
    '| contender | runs (s) | median (s) | MiB/s | ratio | peak RSS (MiB) | RSS of | checks |',
    '| --- | ---: | ---: | ---: | --- | ---: | --- | --- |',
    ...report.summaries.map((s) => {
      const cells = [
        cell(s.contender.label),
        runsText(s),
        fixed(s.medianMs / 1000, 2),
        fixed(s.mibPerSecond, 0),
        cell(suite.ratioText(report.summaries, s.contender.id)),
        fixed(s.peakRssMiB, 1),
        `${s.peakProcess}; covers ${cell(s.contender.rssCovers)}`,
        s.failures.length === 0 ? 'ok' : `**failed**: ${cell(s.failures[0] ?? '')}`,
      ]
      return `| ${cells.join(' | ')} |`
    }),
    '',
    '### Aims',
    '',
    '| aim | measured | met |',
    '| --- | ---: | --- |',
    ...report.aims.map((a) => `| ${cell(a.text)} | ${a.measured} | ${a.met ? 'yes' : '**no**'} |`),
    '',
    '### Reading the figures',
    '',
    ...suite.reading,
    '',
    `This suite took ${fixed(report.totalSeconds, 0)} s. Figures vary from run to run, more so on a`,
    'shared or virtual machine; they compare contenders on one machine, they promise nothing for another.',
    sectionEnd(suite.id),
  ]
  return lines.join('\n')
}

const HEADER = [
  '# Benchmarks',
  '',
  '<!-- Written by `make bench` (bench/run-all.ts): edit the generator, not this file. -->',
  '',
  'Each suite installs an image served over loopback onto a virtual disk with byoi-agent, and does the',
  'same job with the tools others use, in the same run: `make bench` runs every suite,',
  '`node dist/bench/run-all.js --suite NAME` one of them (its section below is rewritten, the others kept).',
  '`make bench BASELINE=DIR` (DIR a checkout of another commit, built) runs each agent contender beside the',
  'same contender of that build, interleaved, and prints an A/B table instead of rewriting this file.',
  '',
].join('\n')

function sectionStart (id: string): string {
  return `<!-- suite ${id} -->`
}

function sectionEnd (id: string): string {
  return `<!-- end of suite ${id} -->`
}

/**
 * docs/benchmarks.md with one suite's section replaced (or added, in `order`); the other suites'
 * sections are kept as they were. Anything else in `existing` is rewritten from the generator.
 */
export function mergeSection (existing: string, section: { id: string; text: string }, order: readonly string[]): string {
  const sections = new Map<string, string>()
  for (const id of order) {
    const start = existing.indexOf(sectionStart(id))
    const end = existing.indexOf(sectionEnd(id))
    if (start >= 0 && end > start) sections.set(id, existing.slice(start, end + sectionEnd(id).length))
  }
  sections.set(section.id, section.text)
  const parts = order.flatMap((id) => { const text = sections.get(id); return text === undefined ? [] : [text] })
  return `${HEADER}\n${parts.join('\n\n')}\n`
}
