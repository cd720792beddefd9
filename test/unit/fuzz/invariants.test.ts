/**
 * Review of the fuzz suite's judge (fuzz/invariants.ts): cases it lets pass that break issue 11's
 * promise. Each builds the disk as a broken agent would leave it and asks the judge; each fails on
 * the judge it was written against. The last one is about the case generator (fuzz/table-cases.ts).
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { CaseRun } from '../../../fuzz/case-runner.js'
import type { FuzzCase } from '../../../fuzz/fuzz-case.js'
import { invariantBreaks, judge } from '../../../fuzz/invariants.js'
import { Random } from '../../../fuzz/random.js'
import { tableCase as makeTableCase } from '../../../fuzz/table-cases.js'
import { httpCase } from '../../../fuzz/http-cases.js'
import { DISK_BYTES, MiB, TargetDisk } from '../../../fuzz/target-disk.js'
import { classifyMbr } from '../../../agent/disk/mbr.js'
import { makeGptImage, makeImage } from '../../helpers/image-server.js'
import { tempDir } from '../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)
const disk = TargetDisk.create(join(tmp.path, 'target.img'))

function writeAt (path: string, data: Buffer, offset: number): void {
  const fd = openSync(path, 'r+')
  try {
    writeSync(fd, data, 0, data.length, offset)
  } finally {
    closeSync(fd)
  }
}

function tableCase (served: Buffer, mode: FuzzCase['mode']): FuzzCase {
  return {
    id: 'review-0',
    family: 'table',
    index: 0,
    label: 'review',
    kind: 'review',
    imageType: 'raw',
    served,
    guest: () => served,
    behaviour: { kind: 'ok', chunked: false },
    mode,
    checksumType: undefined,
    mustFail: false,
  }
}

function run (outcome: CaseRun['outcome']): CaseRun {
  return { outcome, hang: undefined, wallMs: 1, loopMaxMs: 1, peakRssBytes: 0 }
}

/** An MBR image (sfdisk) of 3 MiB: partition 1 at LBA 2048-4095. */
function mbrImage (): Buffer {
  const file = join(tmp.path, 'mbr.raw')
  writeFileSync(file, makeImage(3 * MiB))
  execFileSync('sfdisk', ['-q', file], { input: 'label: dos\nstart=2048, size=2048, type=83\n', stdio: ['pipe', 'ignore', 'ignore'] })
  return readFileSync(file)
}

for (const code of ['PARTITION_TABLE_INVALID', 'NO_PARTITION_TABLE']) {
  t.test(`the judge: memory mode, ${code} (decided from the image alone) once writing began is a break`, async (t) => {
    disk.restore()
    // A broken agent: it wrote, then refused, then zeroed the first and last MiB.
    writeAt(disk.path, Buffer.alloc(MiB), 0)
    writeAt(disk.path, Buffer.alloc(MiB), DISK_BYTES - MiB)
    const verdict = judge(tableCase(mbrImage(), 'memory'), run({ kind: 'error', code, message: 'refused', cause: undefined }), disk)
    t.not(invariantBreaks(verdict).length, 0, `${code} in memory mode must leave the disk untouched: the judge should name a break`)
  })
}

t.test('the judge: an INSTALLED MBR image whose sector 5 (the MBR gap, where GRUB\'s core.img lives) differs is a break', async (t) => {
  disk.restore()
  const image = mbrImage()
  // As an agent would leave it: the image, config-2 added as record 2 past it, the last MiB zeroed.
  const installed = Buffer.from(image)
  installed.writeUInt8(0x83, 446 + 16 + 4)
  installed.writeUInt32LE(8192, 446 + 16 + 8)
  installed.writeUInt32LE(8192, 446 + 16 + 12)
  writeAt(disk.path, installed, 0)
  writeAt(disk.path, Buffer.alloc(MiB), DISK_BYTES - MiB)
  writeAt(disk.path, Buffer.alloc(8192 * 512), 8192 * 512)
  writeAt(disk.path, Buffer.alloc(512, 0x5a), 5 * 512) // a broken agent's stray write in the MBR gap
  const outcome = run({
    kind: 'installed',
    bytes: image.length,
    table: 'mbr',
    configDrive: { offsetBytes: 8192 * 512, sizeBytes: 8192 * 512, table: 'mbr' },
  })
  const verdict = judge(tableCase(image, 'memory'), outcome, disk)
  t.equal(verdict.result, 'INSTALLED')
  t.not(invariantBreaks(verdict).length, 0, 'the image\'s sector 5 differs on the disk: the judge should say "data differs from the image"')
})

t.test('the table generator\'s "protective MBR: hybrid" case is a hybrid MBR', async (t) => {
  const fixtures = { gptImage: makeGptImage(4 * MiB), mbrImage: mbrImage(), qcow2: [] }
  let seen = 0
  for (let seed = 1; seed < 20000 && seen < 3; seed++) {
    const c = makeTableCase(seed, new Random(seed), fixtures)
    if (c.kind !== 'gpt mbr hybrid') continue
    seen++
    t.equal(classifyMbr(c.served), 'hybrid', `seed ${seed}: the served image's LBA 0 is a hybrid MBR`)
  }
  t.ok(seen > 0, 'the generator made the case')
})

t.test('the http generator: a stall after some bytes is progress, the download goes on, so it need not fail (make fuzz SEED=5151 CASE=http-291)', async (t) => {
  const fixtures = { gptImage: makeGptImage(4 * MiB), mbrImage: mbrImage(), qcow2: [] }
  let seen = 0
  for (let seed = 1; seed < 20000 && seen < 3; seed++) {
    const c = httpCase(seed, new Random(seed), fixtures)
    const b = c.behaviour
    if (b.kind !== 'stall' || b.beforeHeaders || b.afterBytes === 0 || !c.mustFail) continue
    seen++
    t.notOk(c.mustFail, `seed ${seed}: ${c.label}: every attempt brings ${b.afterBytes} bytes, ` +
      'the agent\'s retries go on (failures in a row reset on progress): an install is right')
  }
})
