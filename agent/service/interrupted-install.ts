/**
 * An install the agent was killed in (`kill -9`, the OOM killer, a crash), found in the saved
 * state at the next start. Its image's first MiB was held back, so a disk it had begun writing
 * keeps its OLD partition table over partly new data: the old system may still "boot", half
 * overwritten. So a disk that may have been written (the state's disk-write record, saved and
 * synced before the first byte reached it) gets its first and last MiB zeroed, as a failure would
 * have done, before the job is reported INTERRUPTED; a disk the install had not begun writing is
 * left as it was (INTERRUPTED_UNTOUCHED).
 */
import type { Logger } from 'pino'
import { Disk, rereadPartitionTable } from '../disk/disk.js'
import { errors, isInstallError, type InstallError } from '../errors/install-error.js'
import type { SavedState } from './job-state-store.js'
import { makeUnbootable } from '../disk/boot-area.js'

export interface InterruptedOutcome {
  error: InstallError
  /** What was done to the disk, for the status's notes; undefined when nothing was. */
  note: string | undefined
}

/** Makes the recorded disk unbootable when the install may have written to it; says what was done. */
export async function settleInterruptedInstall (saved: SavedState, logger: Logger | undefined): Promise<InterruptedOutcome> {
  if (saved.diskWrite === null) return { error: errors.interruptedUntouched(), note: undefined }
  // No record (a state saved by an older agent): writing may have begun, the disk is treated so.
  const path = saved.diskWrite?.path ?? saved.status.disk.path
  const expectedBytes = saved.diskWrite?.sizeBytes
  let disk: Disk
  try {
    disk = await Disk.open(path)
  } catch (err) {
    const reason = isInstallError(err) ? err.message.replace(/^Could not open disk /, '').replace(/\.$/, '') : String(err)
    logger?.error({ err, disk: path }, 'interrupted install: cannot open the disk to make it unbootable')
    return { error: errors.interrupted(`cannot open ${reason}`), note: undefined }
  }
  try {
    if (expectedBytes !== undefined && disk.sizeBytes !== expectedBytes) {
      // Not the disk the install wrote to (a device renamed since?): not touched.
      logger?.error({ disk: path, sizeBytes: disk.sizeBytes, expectedBytes }, 'interrupted install: the disk is not the one recorded')
      return { error: errors.interrupted(`${path} now holds ${disk.sizeBytes} bytes, not the ${expectedBytes} recorded`), note: undefined }
    }
    if (!await makeUnbootable(disk, logger)) return { error: errors.interrupted(`zeroing ${path} failed`), note: undefined }
  } finally {
    await disk.close().catch(() => {})
  }
  if (disk.kind === 'block') await rereadPartitionTable(path).catch((err: unknown) => logger?.warn({ err }, 'partition table re-read failed'))
  const note = `The install was interrupted after it began writing to ${path}: ` +
    'its first and last MiB were zeroed when the agent started again, so the partly written disk cannot boot.'
  logger?.warn({ disk: path }, note)
  return { error: errors.interrupted(), note }
}
