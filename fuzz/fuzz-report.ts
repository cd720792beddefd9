/** The summary of a run: cases per family, results by code, crashes, hangs, invariant breaks (each with a replay command), peaks. */
import { FAMILIES } from './fuzz-case.js'
import { invariantBreaks } from './invariants.js'
import { replayCommand, type CaseRecord } from './fuzz-session.js'

export interface RunInfo {
  seed: number
  budget: string
  date: string
  elapsedMs: number
  maxRssBytes: number
}

interface Group { count: number; first: CaseRecord; detail: string; kinds: Map<string, number> }

function table (header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MiB`
const escape = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')

/** Every break kind, crash and hang, grouped by family and kind, with the first case that showed it and the kinds of case that did. */
export function groupFindings (records: CaseRecord[]): Map<string, Group> {
  const groups = new Map<string, Group>()
  const add = (key: string, record: CaseRecord, detail: string): void => {
    const group = groups.get(key) ?? { count: 0, first: record, detail, kinds: new Map<string, number>() }
    group.count++
    group.kinds.set(record.kind, (group.kinds.get(record.kind) ?? 0) + 1)
    groups.set(key, group)
  }
  for (const r of records) {
    if (r.verdict.crash !== undefined) add(`${r.family}: crash`, r, r.verdict.crash)
    if (r.verdict.hang !== undefined) {
      add(`${r.family}: hang (${r.verdict.hang === 'aborted' ? 'ended once aborted' : 'worker terminated'})`, r, `did not end within the case deadline`)
    }
    for (const b of r.verdict.breaks) add(`${b.late === true ? 'late refusal, not a break: ' : ''}${r.family}: ${b.kind}`, r, b.detail)
  }
  return groups
}

export function renderReport (records: CaseRecord[], info: RunInfo): string {
  const byFamily = FAMILIES.map((f) => records.filter((r) => r.family === f))
  const codes = [...new Set(records.map((r) => r.verdict.result))].sort((a, b) => (a === 'INSTALLED' ? -1 : b === 'INSTALLED' ? 1 : a.localeCompare(b)))
  const count = (list: CaseRecord[], test: (r: CaseRecord) => boolean): number => list.filter(test).length
  const broken = (r: CaseRecord): boolean => invariantBreaks(r.verdict).length > 0
  const late = (r: CaseRecord): boolean => r.verdict.breaks.some((b) => b.late === true)
  /** A row: `label`, then `cell` of each family's records, then of all. */
  const row = (label: string, cell: (l: CaseRecord[]) => string): string[] => [label, ...byFamily.map(cell), cell(records)]
  const summary = table(['', ...FAMILIES, 'all'], [
    row('cases', (l) => String(l.length)),
    ...codes.map((code) => row(`\`${code}\``, (l) => String(count(l, (r) => r.verdict.result === code)))),
    row('crashes', (l) => String(count(l, (r) => r.verdict.crash !== undefined))),
    row('hangs', (l) => String(count(l, (r) => r.verdict.hang !== undefined))),
    row('cases with an invariant break', (l) => String(count(l, broken))),
    row('refused only once writing began (disk zeroed)', (l) => String(count(l, late))),
    row('peak RSS (sampled, per case)', (l) => mib(Math.max(0, ...l.map((r) => r.peakRssBytes)))),
    row('longest event-loop block', (l) => `${Math.max(0, ...l.map((r) => r.loopMaxMs)).toFixed(0)} ms`),
  ])
  const groups = [...groupFindings(records).entries()].sort((a, b) => b[1].count - a[1].count)
  const findings = groups.length === 0
    ? 'No crash, no hang, no invariant break.'
    : table(['finding', 'cases', 'of which', 'first case', 'what it saw', 'replay'], groups.map(([key, g]) => [
      escape(key), String(g.count), escape([...g.kinds.entries()].sort((x, y) => y[1] - x[1]).map(([kind, n]) => `${kind} ×${n}`).join(', ')),
      `\`${g.first.id}\` ${escape(g.first.label)} (${g.first.mode})`, escape(g.detail.slice(0, 160)), `\`${replayCommand(g.first.seed, g.first.id)}\``,
    ]))
  const slowest = records.reduce<CaseRecord | undefined>((a, r) => (a === undefined || r.loopMaxMs > a.loopMaxMs ? r : a), undefined)
  return [
    `Seed ${info.seed}, ${info.budget}: ${records.length} cases in ${(info.elapsedMs / 1000).toFixed(0)} s on ${info.date}; ` +
      `the process's peak RSS (\`process.resourceUsage().maxRSS\`) ${mib(info.maxRssBytes)}.`,
    slowest === undefined ? '' : `Longest event-loop block: ${slowest.loopMaxMs.toFixed(0)} ms in \`${slowest.id}\` (${escape(slowest.label)}).`,
    '',
    summary,
    '',
    '### Findings',
    '',
    findings,
  ].join('\n')
}
