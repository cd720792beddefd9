/**
 * What must hold after each case, judged by independent tools where one exists (sgdisk -v for the
 * table, qemu-img for a qcow2's guest bytes, a sha256 of the whole disk file):
 * - INSTALLED ⇒ the table is clean, holds nothing of the old system's, and the image's data
 *   region is on the disk (outside the sectors the agent rightly rewrites);
 * - a failure ⇒ the disk untouched, or, once writing began, its first and last MiB zeroed
 *   (or, for a ConfigDrive failure, the image left whole and clean);
 * - never a write past the disk's end (its file size unchanged).
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import type { CaseRun } from './case-runner.js'
import type { FuzzCase, IsoCase } from './fuzz-case.js'
import { DISK_BYTES, hashFile, MiB, OLD_PARTITION_NAME, readBytes, type TargetDisk } from './target-disk.js'

const SECTOR = 512
const PRIMARY_GPT_END = 34 * SECTOR // protective MBR (LBA 0), header (1), entries (2-33)
const BACKUP_GPT_BYTES = 33 * SECTOR // the backup's entries and header at the disk's last LBAs

export interface Break {
  /** A short, stable name: cases are grouped by it in the report. */
  kind: string
  detail: string
  /**
   * `late`: not an invariant break, the disk was zeroed as the rule says, but the refusal came only
   * once writing had begun (a compressed qcow2 cluster that does not decode is found while writing).
   */
  late?: true
}

export interface Verdict {
  /** INSTALLED, the error code, CRASH or HANG. */
  result: string
  crash: string | undefined
  hang: CaseRun['hang']
  breaks: Break[]
}

/** Codes that, in memory mode, are decided from the image alone: the disk must be untouched. */
const DECIDED_BEFORE_WRITING_IN_MEMORY = new Set([
  'DOWNLOAD_FAILED', 'QCOW2_TOO_BIG', 'BAD_IMAGE_FORMAT', 'CHECKSUM_MISMATCH', 'IMAGE_TYPE_MISMATCH', 'QCOW2_UNSUPPORTED',
  'QCOW2_DAMAGED', 'SECTOR_SIZE_MISMATCH', 'IMAGE_TOO_BIG_FOR_DISK', 'EFI_BOOTLOADER_NOT_FOUND', 'GPT_MOVE_FAILED',
  'PARTITION_TABLE_INVALID', 'NO_PARTITION_TABLE', 'QCOW2_NO_PARTITION_TABLE', 'DOWNLOAD_REFUSED', 'CONFIGDRIVE_FAILED',
])
/** Codes that, when streaming, come from the head checked (or the answer refused) before any write. */
const DECIDED_BEFORE_WRITING_IN_STREAM = new Set(['IMAGE_TYPE_MISMATCH', 'SECTOR_SIZE_MISMATCH', 'NO_PARTITION_TABLE', 'DOWNLOAD_REFUSED'])

function sgdisk (args: string[], path: string): string {
  try {
    return execFileSync('sgdisk', [...args, path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 })
  } catch (err) {
    return String((err as { stdout?: unknown }).stdout ?? err)
  }
}

/** sgdisk's first `Problem:` paragraph (else its first warning), on one line. */
function firstProblem (report: string): string {
  const paragraphs = report.split(/\n\s*\n/).map((p) => p.replace(/\s+/g, ' ').trim()).filter((p) => p !== '' && !p.startsWith('Verification may miss'))
  return (paragraphs.find((p) => p.startsWith('Problem:')) ?? paragraphs[0] ?? '').slice(0, 160)
}

/**
 * The table as sgdisk sees it: clean, or the first problem it names; and whether the old
 * system's table is still where a tool would find it (its partition name in the GPT sectors at
 * either end of the disk: a stale backup GPT that sgdisk or firmware would load).
 */
function judgeTable (path: string): Break[] {
  const breaks: Break[] = []
  const verify = sgdisk(['-v'], path)
  if (!/No problems found/.test(verify)) breaks.push({ kind: 'sgdisk -v finds problems', detail: firstProblem(verify) })
  const name = Buffer.from(OLD_PARTITION_NAME, 'utf16le')
  const ends = [readBytes(path, 0, PRIMARY_GPT_END), readBytes(path, DISK_BYTES - BACKUP_GPT_BYTES, BACKUP_GPT_BYTES)]
  if (ends.some((b) => b.includes(name))) {
    const listed = sgdisk(['-p'], path).includes(OLD_PARTITION_NAME)
    breaks.push({
      kind: `old table still on the disk (${OLD_PARTITION_NAME})`,
      detail: listed
        ? 'sgdisk -p lists the old system\'s partition'
        : 'the old GPT\'s entries are still in the GPT sectors (sgdisk loads that backup when the primary is invalid)',
    })
  }
  return breaks
}

/** The sector of the image's own backup GPT header, which the agent zeroes on purpose once it moved the backup (formats.md 2.6 step 6). */
function imageBackupHeader (guest: Buffer): Array<[number, number]> {
  if (guest.length < 2 * SECTOR || guest.toString('latin1', SECTOR, SECTOR + 8) !== 'EFI PART') return []
  const lba = guest.readBigUInt64LE(SECTOR + 32)
  if (lba * BigInt(SECTOR) >= BigInt(guest.length)) return []
  return [[Number(lba) * SECTOR, (Number(lba) + 1) * SECTOR]]
}

/** The guest's bytes against the disk's, outside the sectors the agent rewrites. */
function compareData (path: string, guest: Buffer, skip: Array<[number, number]>): Break[] {
  if (guest.length > DISK_BYTES) return [{ kind: 'installed an image larger than the disk', detail: `${guest.length} bytes` }]
  const disk = readBytes(path, 0, guest.length)
  const skipped = (at: number): boolean => skip.some(([start, end]) => at >= start && at < end)
  let first = -1
  let count = 0
  for (let at = 0; at < guest.length; at += SECTOR) {
    if (skipped(at)) continue
    const end = Math.min(at + SECTOR, guest.length)
    if (disk.compare(guest, at, end, at, end) !== 0) {
      if (first < 0) first = at
      count++
    }
  }
  return first < 0 ? [] : [{ kind: 'data differs from the image', detail: `${count} sector(s) differ, the first at byte ${first} (sector ${first / SECTOR})` }]
}

function zeroed (path: string): boolean {
  const isZero = (b: Buffer): boolean => b.every((x) => x === 0)
  return isZero(readBytes(path, 0, MiB)) && isZero(readBytes(path, DISK_BYTES - MiB, MiB))
}

export function judge (c: FuzzCase, run: CaseRun, disk: TargetDisk): Verdict {
  const outcome = run.outcome
  const breaks: Break[] = []
  const sizeBytes = disk.sizeBytes()
  if (sizeBytes !== DISK_BYTES) breaks.push({ kind: 'wrote past the disk (its size changed)', detail: `${DISK_BYTES} → ${sizeBytes} bytes` })
  if (outcome === undefined) return { result: 'HANG', crash: undefined, hang: run.hang, breaks }
  if (outcome.kind === 'crash') return { result: 'CRASH', crash: outcome.error, hang: run.hang, breaks }
  if (outcome.kind === 'error' && outcome.code === 'INTERNAL_ERROR') {
    return { result: 'INTERNAL_ERROR', crash: `INTERNAL_ERROR: ${outcome.cause ?? outcome.message}`, hang: run.hang, breaks }
  }

  // What the agent rewrites: the GPT's sectors at both ends; on an MBR disk only LBA 0 (its gap, LBA 1-2047, holds GRUB's core.img).
  const tableStart = outcome.kind === 'installed' && outcome.table === 'mbr' ? 512 : PRIMARY_GPT_END
  const guestSkip = (extra: Array<[number, number]>): Array<[number, number]> => [[0, tableStart], [DISK_BYTES - BACKUP_GPT_BYTES, DISK_BYTES], ...extra]
  if (outcome.kind === 'installed') {
    if (c.mustFail) breaks.push({ kind: 'installed what the server got wrong', detail: `the answer was ${c.kind}, not the file` })
    breaks.push(...judgeTable(disk.path))
    const guest = c.guest()
    if (guest === undefined) {
      breaks.push({ kind: 'installed a qcow2 qemu-img refuses', detail: 'qemu-img convert failed on the served file' })
    } else {
      const { offsetBytes, sizeBytes: configBytes } = outcome.configDrive
      breaks.push(...compareData(disk.path, guest, guestSkip([[offsetBytes, offsetBytes + configBytes], ...imageBackupHeader(guest)])))
    }
    return { result: 'INSTALLED', crash: undefined, hang: run.hang, breaks }
  }
  if (outcome.kind === 'read') return { result: 'CRASH', crash: 'a read outcome for an install', hang: run.hang, breaks }

  const code = outcome.code
  if (hashFile(disk.path) === disk.pristineHash) return { result: code, crash: undefined, hang: run.hang, breaks }
  const memory = c.mode === 'memory'
  if (code === 'CANCELLED_UNTOUCHED') breaks.push({ kind: 'CANCELLED_UNTOUCHED but the disk was touched', detail: outcome.message })
  else if ((memory ? DECIDED_BEFORE_WRITING_IN_MEMORY : DECIDED_BEFORE_WRITING_IN_STREAM).has(code)) {
    const detail = `${memory ? 'memory' : 'stream'} mode: the disk was written before the image was refused (${outcome.cause ?? outcome.message})`.slice(0, 240)
    breaks.push(code === 'QCOW2_DAMAGED' ? { kind: `${code} after writing began`, detail, late: true } : { kind: `${code} after writing began`, detail })
  }
  if (zeroed(disk.path)) return { result: code, crash: undefined, hang: run.hang, breaks }
  if (code === 'CONFIGDRIVE_FAILED') {
    // The documented exception: the verified image left in place, without a ConfigDrive; it must then be whole and clean.
    const guest = c.guest() ?? Buffer.alloc(0)
    const kept = [...judgeTable(disk.path), ...compareData(disk.path, guest, guestSkip(imageBackupHeader(guest)))]
    breaks.push(...kept.map((b) => ({ kind: `image kept without config-2: ${b.kind}`, detail: b.detail })))
  } else {
    breaks.push({ kind: 'failed and the disk is neither untouched nor zeroed', detail: `${code}: first or last MiB not zero` })
  }
  return { result: code, crash: undefined, hang: run.hang, breaks }
}

/** The verdict's invariant breaks (late refusals are reported, not counted as breaks). */
export function invariantBreaks (verdict: Verdict): Break[] {
  return verdict.breaks.filter((b) => b.late !== true)
}

/** readIso9660Files' default limits: what a read may never go past. */
const ISO_MAX_FILE_BYTES = 64 * MiB
const ISO_MAX_ENTRIES = 10_000
const ISO_MAX_DEPTH = 8

/**
 * Family `iso`: a read returns files within the limits, each a well-formed path met once, or
 * refuses with Iso9660FormatError (result ISO9660_FORMAT); an unchanged image reads back as built,
 * name for name and byte for byte (sha256). Any other error is a crash, a read past the deadline a hang.
 */
export function judgeIsoRead (c: IsoCase, run: CaseRun): Verdict {
  const outcome = run.outcome
  if (outcome === undefined) return { result: 'HANG', crash: undefined, hang: run.hang, breaks: [] }
  if (outcome.kind === 'crash') return { result: 'CRASH', crash: outcome.error, hang: run.hang, breaks: [] }
  const breaks: Break[] = []
  if (outcome.kind === 'error') {
    if (c.expected !== undefined) breaks.push({ kind: 'an intact image refused', detail: outcome.message.slice(0, 240) })
    return { result: outcome.code, crash: undefined, hang: run.hang, breaks }
  }
  if (outcome.kind !== 'read') return { result: 'CRASH', crash: `an install outcome for a read: ${outcome.kind}`, hang: run.hang, breaks }
  const { files } = outcome.read
  const total = files.reduce((sum, f) => sum + f.sizeBytes, 0)
  if (total > ISO_MAX_FILE_BYTES) breaks.push({ kind: 'read past the byte limit', detail: `${total} bytes` })
  if (files.length > ISO_MAX_ENTRIES) breaks.push({ kind: 'read past the entry limit', detail: `${files.length} files` })
  const paths = new Set<string>()
  for (const f of files) {
    const parts = f.path.split('/')
    if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\0'))) breaks.push({ kind: 'a malformed path', detail: JSON.stringify(f.path) })
    if (parts.length - 1 > ISO_MAX_DEPTH) breaks.push({ kind: 'read past the depth limit', detail: f.path })
    if (paths.has(f.path)) breaks.push({ kind: 'a path returned twice', detail: f.path })
    paths.add(f.path)
  }
  if (c.expected !== undefined) {
    const want = c.expected.map((f) => `${f.path} ${createHash('sha256').update(f.data).digest('hex')}`).sort()
    const got = files.map((f) => `${f.path} ${f.sha256}`).sort()
    if (want.join('\n') !== got.join('\n')) {
      breaks.push({ kind: 'an intact image read wrong', detail: `read ${got.map((g) => g.split(' ')[0]).join(', ')}`.slice(0, 240) })
    }
  }
  return { result: 'READ', crash: undefined, hang: run.hang, breaks }
}
