/**
 * `make fuzz`: hostile inputs installed by the agent onto a disk that held another system, until
 * the time (`--seconds`, default 420) or case (`--cases`) budget is spent. Prints a summary and
 * rewrites its section of docs/fuzz.md (`--no-doc`: not). `--seed N` makes the same cases again;
 * `--case ID` (repeatable) runs only those (a replay). Not part of `make test`: a seeded slice of
 * it is (test/integration/fuzz-slice.test.ts). Every case with a finding goes in full to
 * build/fuzz/findings-seed-SEED.json. Exit status 1 if any crash, hang or break was seen.
 */
import { randomInt } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { rewriteMarked } from '../scripts/doc-markers.js'
import { FAMILIES, type Family } from './fuzz-case.js'
import { renderReport } from './fuzz-report.js'
import { invariantBreaks } from './invariants.js'
import { DEFAULT_CASE_TIMEOUT_MS, FuzzSession, familyOf, parseCaseId, replayCommand, type CaseRecord } from './fuzz-session.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..') // dist/fuzz/ → the repository

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '420' },
    cases: { type: 'string' },
    seed: { type: 'string' },
    case: { type: 'string', multiple: true },
    family: { type: 'string', multiple: true },
    'case-timeout-ms': { type: 'string', default: String(DEFAULT_CASE_TIMEOUT_MS) },
    'no-doc': { type: 'boolean', default: false },
  },
})

const seed = values.seed === undefined || values.seed === '' ? randomInt(2 ** 31) : Number(values.seed)
const caseIds = (values.case ?? []).flatMap((c) => c.split(',')).filter((c) => c !== '')
const families = new Set<Family>((values.family ?? [...FAMILIES]).map((f) => {
  if (!(FAMILIES as readonly string[]).includes(f)) throw new Error(`--family ${f}: one of ${FAMILIES.join(', ')}`)
  return f as Family
}))
const seconds = Number(values.seconds)
const maxCases = values.cases === undefined ? Infinity : Number(values.cases)
if (!Number.isSafeInteger(seed) || !(seconds > 0) || !(maxCases > 0)) throw new Error('--seed, --seconds and --cases take positive numbers')

const session = FuzzSession.open({ caseTimeoutMs: Number(values['case-timeout-ms']) })
const records: CaseRecord[] = []
const started = performance.now()
const budget = `${Number.isFinite(maxCases) ? `${maxCases} cases or ` : ''}${seconds} s`
console.error(`fuzz: seed ${seed}, ${caseIds.length > 0 ? `cases ${caseIds.join(' ')}` : budget}`)
try {
  const indexes = caseIds.length > 0 ? caseIds.map(parseCaseId) : undefined
  for (let i = 0; indexes === undefined ? records.length < maxCases && performance.now() - started < seconds * 1000 : i < indexes.length; i++) {
    const index = indexes?.[i] ?? i
    if (indexes === undefined && !families.has(familyOf(index))) continue
    const record = await session.run(seed, index)
    records.push(record)
    const { verdict } = record
    const flags = [
      verdict.crash !== undefined ? `CRASH ${verdict.crash}` : '',
      verdict.hang !== undefined ? `HANG (${verdict.hang})` : '',
      ...verdict.breaks.map((b) => `${b.late === true ? 'LATE' : 'BREAK'} ${b.kind}: ${b.detail}`),
    ].filter((f) => f !== '')
    const details = flags.length > 0 ? `\n           ${flags.join('\n           ')}\n           replay: ${replayCommand(seed, record.id)}` : ''
    console.error(`${record.id.padEnd(10)} ${verdict.result.padEnd(22)} ${(record.wallMs / 1000).toFixed(1).padStart(5)} s  ` +
      `${record.mode.padEnd(11)} ${record.label}${details}`)
  }
} finally {
  await session.close()
}

const report = renderReport(records, {
  seed,
  budget: caseIds.length > 0 ? `cases ${caseIds.join(', ')}` : `budget ${Number.isFinite(maxCases) ? `${maxCases} cases, ` : ''}${seconds} s`,
  date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  elapsedMs: performance.now() - started,
  maxRssBytes: process.resourceUsage().maxRSS * 1024,
})
console.log(report)
// Every case with a finding, in full, for replays (build/ is not committed).
const findings = records.filter((r) => r.verdict.crash !== undefined || r.verdict.hang !== undefined || r.verdict.breaks.length > 0)
const findingsFile = join(root, 'build', 'fuzz', `findings-seed-${seed}.json`)
mkdirSync(dirname(findingsFile), { recursive: true })
writeFileSync(findingsFile, JSON.stringify(findings.map((r) => ({ ...r, replay: replayCommand(seed, r.id) })), null, 2) + '\n')
console.error(`${findings.length} case(s) with a finding: ${findingsFile}`)
if (!values['no-doc'] && caseIds.length === 0) {
  rewriteMarked(join(root, 'docs', 'fuzz.md'), 'fuzz', report)
  console.error('docs/fuzz.md updated')
}
process.exitCode = records.some((r) => r.verdict.crash !== undefined || r.verdict.hang !== undefined || invariantBreaks(r.verdict).length > 0) ? 1 : 0
