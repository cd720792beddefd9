/**
 * The e2e runner: `node dist/test/e2e/run-e2e.js [--ci] [--case NAME]... [--list] [--verbose]
 *   [--rescue-append 'byoi.memlog=5'] [--lifecycle-without-scrub] [--ironic-without-failure-run]` (more rescue kernel
 *   command line; the lifecycle's control run, B installed without scrub: the scrub's checks must then fail; the ironic
 *   case without its wrong-digest run).
 * Runs the cases one after the other (each VM takes both cores under TCG), prints each check as it
 * is made, then a summary with the timings; writes build/e2e/summary.json. Exit status 0 when
 * every case passed. Needs `make rescue-image test-os-image` (the Makefile's e2e targets do it).
 */
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { CASES } from './cases.js'
import { IRONIC_NAME, IRONIC_SUMMARY, runIronicCase } from './ironic.js'
import { LIFECYCLE_NAME, LIFECYCLE_SUMMARY, runLifecycle, type LifecycleOptions } from './lifecycle.js'
import { repoRoot, runCase, type CaseObserver, type CaseReport } from './run-case.js'

const { values } = parseArgs({
  options: {
    ci: { type: 'boolean', default: false },
    case: { type: 'string', multiple: true },
    list: { type: 'boolean', default: false },
    verbose: { type: 'boolean', short: 'v', default: false },
    'rescue-append': { type: 'string' },
    'lifecycle-without-scrub': { type: 'boolean', default: false },
    'ironic-without-failure-run': { type: 'boolean', default: false },
  },
})

/**
 * The matrix's install cases, then the image lifecycle (lifecycle.ts: install, bake, capture, install elsewhere, boot),
 * then Ironic's deploy through the rescue image (ironic.ts).
 */
interface RunOptions extends LifecycleOptions { ironicWithoutFailureRun?: boolean }
interface Runnable { name: string; summary: string; ci: boolean; run: (observer: CaseObserver, options: RunOptions) => Promise<CaseReport> }
const RUNNABLE: Runnable[] = [
  ...CASES.map((c) => ({
    name: c.name, summary: c.summary, ci: c.ci === true, run: async (o: CaseObserver, opts: RunOptions) => await runCase(c, o, opts),
  })),
  { name: LIFECYCLE_NAME, summary: LIFECYCLE_SUMMARY, ci: false, run: runLifecycle },
  {
    name: IRONIC_NAME,
    summary: IRONIC_SUMMARY,
    ci: false,
    run: async (o: CaseObserver, opts: RunOptions) => await runIronicCase(o, { ...opts, withoutFailureRun: opts.ironicWithoutFailureRun }),
  },
]

if (values.list) {
  for (const c of RUNNABLE) console.log(`${c.ci ? '*' : ' '} ${c.name.padEnd(24)} ${c.summary}`)
  process.exit(0)
}

const root = repoRoot()
for (const needed of ['build/rescue/vmlinuz', 'build/rescue/initramfs.img', 'build/test-os/test-os.raw']) {
  if (!existsSync(join(root, needed))) {
    console.error(`missing ${needed}: run make rescue-image test-os-image (or make e2e)`)
    process.exit(2)
  }
}
const selected = values.case !== undefined
  ? values.case.map((name) => RUNNABLE.find((c) => c.name === name) ?? (() => { console.error(`unknown case ${name} (--list)`); process.exit(2) })())
  : RUNNABLE.filter((c) => !values.ci || c.ci)

const started = Date.now()
const clock = (): string => {
  const s = Math.floor((Date.now() - started) / 1000)
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`
}
const reports: CaseReport[] = []
for (const testCase of selected) {
  console.log(`\n[${clock()}] === ${testCase.name}: ${testCase.summary}`)
  let lastPercent = -1
  const report = await testCase.run({
    phase: (text) => console.log(`[${clock()}] ${text}`),
    event: (event) => {
      if (event.type === 'step' && event.data.status !== 'todo') console.log(`[${clock()}]   step ${event.data.name}: ${event.data.status}`)
      else if (event.type === 'note') console.log(`[${clock()}]   note: ${event.data.message}`)
      else if (event.type === 'progress' && event.data.totalBytes !== null && event.data.totalBytes > 0) {
        const percent = Math.floor((event.data.bytes / event.data.totalBytes) * 4) * 25
        if (percent !== lastPercent) {
          lastPercent = percent
          console.log(`[${clock()}]   ${event.data.step} ${percent} % (${Math.round(event.data.bytesPerSecond / 1048576)} MiB/s)`)
        }
      }
    },
    rescueConsole: values.verbose ? (line) => console.log(`    rescue| ${line}`) : undefined,
    bootConsole: values.verbose ? (line) => console.log(`    boot| ${line}`) : undefined,
    check: (c) => console.log(`[${clock()}]   ${c.ok ? 'ok    ' : 'NOT OK'} ${c.name}${c.detail === '' ? '' : ` — ${c.detail}`}`),
  }, { rescueAppend: values['rescue-append'], withoutScrub: values['lifecycle-without-scrub'], ironicWithoutFailureRun: values['ironic-without-failure-run'] })
  const phases = Object.entries(report.timings.phases ?? {}).map(([phase, s]) => `${phase} ${s} s`).join(', ')
  if (phases !== '') console.log(`[${clock()}]   phases: ${phases}`)
  if (report.error !== undefined) console.log(`[${clock()}]   NOT OK ${report.error}`)
  console.log(`[${clock()}] === ${testCase.name}: ${report.ok ? 'PASS' : 'FAIL'} in ${report.timings.total} s (logs in ${report.dir})`)
  reports.push(report)
}

console.log('\ncase                     result  rescue→API  install  host checks  boots                  total')
for (const r of reports) {
  const boots = Object.entries(r.timings.boots).map(([fw, s]) => `${fw} ${s} s`).join(', ')
  const cell = (value: number | undefined): string => (value === undefined ? '-' : `${value} s`)
  const columns = [
    r.name.padEnd(24),
    (r.ok ? 'PASS' : 'FAIL').padEnd(7),
    cell(r.timings.rescueToApi).padEnd(11),
    cell(r.timings.install).padEnd(8),
    cell(r.timings.hostChecks).padEnd(12),
    boots.padEnd(22),
    `${r.timings.total} s`,
  ]
  console.log(columns.join(' '))
}
const failed = reports.filter((r) => !r.ok)
console.log(`\n${reports.length - failed.length}/${reports.length} cases passed in ${clock()}`)
await mkdir(join(root, 'build', 'e2e'), { recursive: true })
await writeFile(join(root, 'build', 'e2e', values.ci ? 'summary-ci.json' : 'summary.json'), JSON.stringify(reports, null, 2))
process.exitCode = failed.length === 0 ? 0 : 1
