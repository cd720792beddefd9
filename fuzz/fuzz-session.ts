/**
 * A fuzz session: the fixtures and the target disk made once in a temporary directory, then cases
 * one after the other, each made from (seed, index) alone, served on 127.0.0.1, installed by the
 * agent on the worker, and judged (an `iso` case: its image read on the worker, and judged). Used by `make fuzz` (run-fuzz.ts) and by the tap slice.
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { InstallRequest } from '../agent/payload/install-request.js'
import { CaseRunner } from './case-runner.js'
import { makeFixtures, type Fixtures } from './fixtures.js'
import { FAMILIES, type AnyCase, type Family, type IsoCase } from './fuzz-case.js'
import { startHostileServer } from './hostile-server.js'
import { FUZZ_TUNING, httpCase } from './http-cases.js'
import { judge, judgeIsoRead, type Verdict } from './invariants.js'
import { isoCase, makeIsoFixtures, type IsoFixture } from './iso-cases.js'
import { qcow2Case } from './qcow2-cases.js'
import { caseSeed, Random } from './random.js'
import { tableCase } from './table-cases.js'
import { MiB, TargetDisk } from './target-disk.js'

export const DEFAULT_CASE_TIMEOUT_MS = 20_000 // 20 s: the slowest honest failure (3 idle timeouts) takes under 10
const MEMORY_LIMIT_BYTES = 256 * MiB
const OVER_BUDGET_LIMIT_BYTES = MiB // a raw image over it switches to streaming

export interface CaseRecord {
  seed: number
  id: string
  family: Family
  kind: string
  label: string
  mode: string
  verdict: Verdict
  wallMs: number
  loopMaxMs: number
  peakRssBytes: number
  requests: number
}

/** The family of case `index`: the four in turn. */
export function familyOf (index: number): Family {
  return FAMILIES[index % FAMILIES.length] as Family
}

/** `FAMILY-INDEX` → index, checked. */
export function parseCaseId (id: string): number {
  const m = /^(http|qcow2|table|iso)-(\d+)$/.exec(id)
  if (m === null || familyOf(Number(m[2])) !== m[1]) {
    throw new Error(`no case ${id}: ids are FAMILY-INDEX with the families in turn (http-0, qcow2-1, table-2, iso-3, http-4…)`)
  }
  return Number(m[2])
}

export function replayCommand (seed: number, id: string): string {
  return `make fuzz SEED=${seed} CASE=${id}`
}

export class FuzzSession {
  private constructor (
    private readonly dir: string,
    private readonly fixtures: Fixtures,
    private readonly isoFixtures: IsoFixture[],
    private readonly disk: TargetDisk,
    private readonly runner: CaseRunner,
  ) {}

  static open (options: { caseTimeoutMs?: number } = {}): FuzzSession {
    const dir = mkdtempSync(join(tmpdir(), 'byoi-fuzz-'))
    try {
      const fixtures = makeFixtures(dir)
      const disk = TargetDisk.create(join(dir, 'disk.img'))
      return new FuzzSession(dir, fixtures, makeIsoFixtures(dir), disk, new CaseRunner(options.caseTimeoutMs ?? DEFAULT_CASE_TIMEOUT_MS))
    } catch (err) {
      rmSync(dir, { recursive: true, force: true })
      throw err
    }
  }

  makeCase (seed: number, index: number): AnyCase {
    const random = new Random(caseSeed(seed, index))
    const family = familyOf(index)
    if (family === 'http') return httpCase(index, random, this.fixtures)
    if (family === 'qcow2') return qcow2Case(index, random, this.fixtures, this.dir)
    if (family === 'iso') return isoCase(index, random, this.isoFixtures)
    return tableCase(index, random, this.fixtures)
  }

  async run (seed: number, index: number): Promise<CaseRecord> {
    const c = this.makeCase(seed, index)
    if (c.family === 'iso') return await this.runIso(seed, c)
    this.disk.restore()
    const server = await startHostileServer(c.served, c.behaviour)
    const request: InstallRequest = {
      source: 'install-start',
      imageUrl: server.url(c.behaviour.kind === 'redirect-loop' ? '/a' : '/image'),
      imageType: c.imageType,
      checksum: c.checksumType === undefined ? undefined : { type: c.checksumType, hex: createHash(c.checksumType).update(c.served).digest('hex') },
      httpHeaders: [],
      metadata: {},
    }
    let run
    try {
      run = await this.runner.run({
        type: 'run',
        options: {
          request,
          diskPath: this.disk.path,
          stream: c.mode === 'stream',
          memoryLimitBytes: c.mode === 'over-budget' ? OVER_BUDGET_LIMIT_BYTES : MEMORY_LIMIT_BYTES,
          downloadTuning: FUZZ_TUNING,
        },
      })
    } finally {
      await server.close()
    }
    const verdict = judge(c, run, this.disk)
    return {
      seed,
      id: c.id,
      family: c.family,
      kind: c.kind,
      label: c.label,
      mode: c.mode,
      verdict,
      wallMs: run.wallMs,
      loopMaxMs: run.loopMaxMs,
      peakRssBytes: run.peakRssBytes,
      requests: server.requests.length,
    }
  }

  /** Family `iso`: the image read on the worker, no server, no disk. */
  private async runIso (seed: number, c: IsoCase): Promise<CaseRecord> {
    const run = await this.runner.run({ type: 'read-iso', image: c.image })
    return {
      seed,
      id: c.id,
      family: c.family,
      kind: c.kind,
      label: c.label,
      mode: c.mode,
      verdict: judgeIsoRead(c, run),
      wallMs: run.wallMs,
      loopMaxMs: run.loopMaxMs,
      peakRssBytes: run.peakRssBytes,
      requests: 0,
    }
  }

  async close (): Promise<void> {
    await this.runner.close()
    rmSync(this.dir, { recursive: true, force: true })
  }
}
