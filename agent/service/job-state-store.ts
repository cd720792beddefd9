/**
 * The job's status kept in a file (`--state-dir`, default /run/byoi-agent), so that an agent
 * restarted in the same rescue session still reports the last result.
 *
 * Each save writes a temporary file in the same folder, syncs it, and renames it over
 * `state.json`: a reader (or a restart after a crash) sees the old state or the new one, never a
 * torn file. Saves are queued one at a time and coalesced (only the latest pending one is
 * written); a failure is logged and never reaches the install.
 */
import { randomBytes } from 'node:crypto'
import { chmod, lstat, mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { Logger } from 'pino'
import { asInstallStatus, type InstallStatus } from './job-status.js'

export const DEFAULT_STATE_DIR = '/run/byoi-agent'
export const STATE_FILE_NAME = 'state.json'
/** Bumped when the file's shape changes; a file of another version is ignored. */
const STATE_VERSION = 1

/**
 * Saved, and synced, before the install's first byte reaches the disk (runInstall's
 * beforeFirstWrite): from then on the disk may hold part of an image over its old partition table.
 */
export interface DiskWriteRecord {
  /** The disk as the install opened it (`--disk auto` resolved). */
  path: string
  sizeBytes: number
  at: string
}

interface StateFile {
  version: number
  savedAt: string
  /** The agent process that saved it (a later one tells a dead install from a live one). */
  pid?: number
  status: InstallStatus
  /** null: the job had not begun writing; absent in files from agents before this record. */
  diskWrite?: DiskWriteRecord | null
}

export interface SavedState {
  status: InstallStatus
  /** undefined: saved by an agent that did not record it (writing may have begun). */
  diskWrite: DiskWriteRecord | null | undefined
  pid: number | undefined
}

/**
 * Makes the state folder ready before anything is kept there: created 0700 when missing; an
 * existing one must be a real folder (not a symbolic link) owned by this process's user, and its
 * mode is set to 0700 if it was anything else (e.g. 0777). Owned by another user it is refused:
 * that user could read the state or swap it. Returns the mode it had when it was changed (for
 * the log); throws an Error saying what is wrong.
 */
export async function prepareStateDir (dir: string): Promise<{ previousMode: number | undefined }> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const stat = await lstat(dir)
  if (stat.isSymbolicLink()) throw new Error('a symbolic link, expected a folder')
  if (!stat.isDirectory()) throw new Error('not a folder')
  const uid = process.getuid?.()
  if (uid !== undefined && stat.uid !== uid) throw new Error(`owned by uid ${stat.uid}, not by this agent (uid ${uid})`)
  const mode = stat.mode & 0o7777
  if (mode === 0o700) return { previousMode: undefined }
  await chmod(dir, 0o700)
  return { previousMode: mode }
}

export class JobStateStore {
  readonly path: string
  private pending: { status: InstallStatus; diskWrite: DiskWriteRecord | null } | undefined
  private writing: Promise<void> | undefined
  private lastWriteOk = true

  constructor (readonly dir: string, private readonly logger?: Logger, fileName = STATE_FILE_NAME) {
    this.path = join(dir, fileName)
  }

  /** The saved status, or undefined when there is none or it cannot be used (logged). */
  async load (): Promise<InstallStatus | undefined> {
    return (await this.loadState())?.status
  }

  /** The saved status with its disk-write record, or undefined when there is none or it cannot be used (logged). */
  async loadState (): Promise<SavedState | undefined> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger?.warn({ err, path: this.path }, 'cannot read the saved state')
      return undefined
    }
    try {
      const file = JSON.parse(text) as Partial<StateFile>
      const status = file.version === STATE_VERSION ? asInstallStatus(file.status) : undefined
      if (status === undefined) {
        this.logger?.warn({ path: this.path, version: file.version }, 'the saved state is not one this agent can use; ignored')
        return undefined
      }
      const record = file.diskWrite
      const recordOk = record === null || (typeof record?.path === 'string' && typeof record.sizeBytes === 'number' && typeof record.at === 'string')
      const diskWrite = recordOk ? record : undefined
      return { status, diskWrite, pid: typeof file.pid === 'number' ? file.pid : undefined }
    } catch (err) {
      this.logger?.warn({ err, path: this.path }, 'the saved state is not JSON; ignored')
      return undefined
    }
  }

  /** Queues a save of `status` (a copy is taken by the caller); returns at once. */
  save (status: InstallStatus, diskWrite: DiskWriteRecord | null = null): void {
    this.pending = { status, diskWrite }
    this.writing ??= this.drain()
  }

  /** Saves and waits until it is on the disk (written, synced, renamed, folder synced): true, or false on a failure (logged). */
  async saveNow (status: InstallStatus, diskWrite: DiskWriteRecord | null): Promise<boolean> {
    this.save(status, diskWrite)
    await this.flush()
    return this.lastWriteOk
  }

  /** Resolves when every queued save is written (or failed and logged). */
  async flush (): Promise<void> {
    while (this.writing !== undefined) await this.writing
  }

  private async drain (): Promise<void> {
    try {
      for (let next = this.pending; next !== undefined; next = this.pending) {
        this.pending = undefined
        try {
          await this.write(next.status, next.diskWrite)
          this.lastWriteOk = true
        } catch (err) {
          this.lastWriteOk = false
          this.logger?.error({ err, path: this.path }, 'cannot save the state')
        }
      }
    } finally {
      this.writing = undefined
    }
  }

  private async write (status: InstallStatus, diskWrite: DiskWriteRecord | null): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const file: StateFile = { version: STATE_VERSION, savedAt: new Date().toISOString(), pid: process.pid, status, diskWrite }
    const temp = join(this.dir, `.${basename(this.path)}.${randomBytes(6).toString('hex')}.tmp`)
    const handle = await open(temp, 'w', 0o600)
    try {
      await handle.writeFile(`${JSON.stringify(file)}\n`)
      await handle.sync()
    } catch (err) {
      await handle.close().catch(() => {})
      await rm(temp, { force: true })
      throw err
    }
    await handle.close()
    try {
      await rename(temp, this.path)
    } catch (err) {
      await rm(temp, { force: true })
      throw err
    }
    // The rename itself made durable: the folder's entry synced.
    const folder = await open(this.dir, 'r')
    try {
      await folder.sync()
    } finally {
      await folder.close()
    }
  }
}
