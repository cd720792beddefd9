import t from 'tap'
import type { AnyCase } from '../../fuzz/fuzz-case.js'
import { FuzzSession, replayCommand } from '../../fuzz/fuzz-session.js'
import { invariantBreaks } from '../../fuzz/invariants.js'

/**
 * A seeded slice of `make fuzz` (docs/fuzz.md): the first cases of one fixed seed, the four
 * families in turn, installed by runInstall onto a disk that held an old GPT. Each case asserts
 * on its outcome only: no crash, no hang, no invariant break. A failing case names its replay
 * command. Stalls and trickles are left to `make fuzz`: whether they end is a matter of time, and
 * the deadline here is only a safety net, far above any honest case, so a busy machine cannot
 * turn a slow case into a hang.
 */

const SEED = 13
const CASES = 24
const CASE_TIMEOUT_MS = 60_000


const session = FuzzSession.open({ caseTimeoutMs: CASE_TIMEOUT_MS })
t.teardown(async () => await session.close())

const slice: AnyCase[] = []
for (let index = 0; slice.length < CASES; index++) {
  const c = session.makeCase(SEED, index)
  if (c.family === 'iso' || (c.behaviour.kind !== 'stall' && c.behaviour.kind !== 'trickle')) slice.push(c)
}

for (const c of slice) {
  const name = `${c.id}: ${c.label} (${c.family !== 'iso' && c.imageType === 'qcow2' ? 'memory' : c.mode})`
  t.test(name, async (t) => {
    const record = await session.run(SEED, c.index)
    const { verdict } = record
    t.comment(`result ${verdict.result}; replay: ${replayCommand(SEED, c.id)}`)
    t.equal(verdict.crash, undefined, 'no crash (an error other than an InstallError, or INTERNAL_ERROR)')
    t.equal(verdict.hang, undefined, 'no hang (the install ended before the deadline)')
    t.same(invariantBreaks(verdict).map((b) => `${b.kind}: ${b.detail}`), [], 'no invariant break')
  })
}
