/**
 * The worker thread that runs the installs (and the `iso` family's reads), one at a time, with the agent's own runInstall (not
 * mocked). It lives apart from the supervisor so that an install that never yields (a spinning
 * parser) can still be timed out, counted as a hang and ended with worker.terminate().
 * Its event-loop delay is measured here, where the install runs.
 */
import { createHash } from 'node:crypto'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parentPort } from 'node:worker_threads'
import { runInstall, type InstallOptions } from '../agent/install/run-install.js'
import { isInstallError } from '../agent/errors/install-error.js'
import { Iso9660FormatError, readIso9660Files } from '../agent/configdrive/read-iso9660.js'

export type WorkerInstallOptions = Pick<InstallOptions, 'request' | 'diskPath' | 'stream' | 'memoryLimitBytes' | 'downloadTuning'>

/** An install, or a read of an ISO 9660 image (family `iso`). */
export type WorkerJob = { type: 'run'; options: WorkerInstallOptions } | { type: 'read-iso'; image: Uint8Array }

export type ToWorker = WorkerJob | { type: 'abort' }

/** What readIso9660Files returned: each file's path, size and sha256. */
export interface IsoRead { names: string; volumeId: string; files: Array<{ path: string; sizeBytes: number; sha256: string }> }

export type InstallOutcome =
  | { kind: 'installed'; bytes: number; table: string; configDrive: { offsetBytes: number; sizeBytes: number; table: string } }
  | { kind: 'error'; code: string; message: string; cause: string | undefined }
  | { kind: 'read'; read: IsoRead }
  /** Not an InstallError (nor, for a read, an Iso9660FormatError): a crash. */
  | { kind: 'crash'; error: string }

export interface FromWorker { type: 'done'; outcome: InstallOutcome; loopMaxMs: number }

function describe (err: unknown): string {
  if (err instanceof Error) {
    const at = err.stack === undefined ? '' : ` @ ${err.stack.split('\n').slice(1, 3).map((l) => l.trim()).join(' < ')}`
    return `${err.name}: ${err.message}${at}`
  }
  return String(err)
}

function readIso (image: Buffer): InstallOutcome {
  try {
    const { names, volumeId, files } = readIso9660Files(image)
    const listed = files.map((f) => ({ path: f.path, sizeBytes: f.data.length, sha256: createHash('sha256').update(f.data).digest('hex') }))
    return { kind: 'read', read: { names, volumeId, files: listed } }
  } catch (err) {
    if (!(err instanceof Iso9660FormatError)) return { kind: 'crash', error: describe(err) }
    return { kind: 'error', code: err.code, message: err.message, cause: undefined }
  }
}

const port = parentPort
if (port === null) throw new Error('case-worker runs as a worker thread')
let controller: AbortController | undefined

port.on('message', (message: ToWorker) => {
  if (message.type === 'abort') {
    controller?.abort(new Error('the fuzz case ran past its deadline'))
    return
  }
  controller = new AbortController()
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  const run = async (): Promise<InstallOutcome> => {
    if (message.type === 'read-iso') return readIso(Buffer.from(message.image.buffer, message.image.byteOffset, message.image.byteLength))
    try {
      const result = await runInstall({ ...message.options, signal: controller?.signal })
      const { partition } = result.configDrive
      return {
        kind: 'installed',
        bytes: result.bytes,
        table: result.partitionTable.kind,
        configDrive: { offsetBytes: partition.offsetBytes, sizeBytes: partition.sizeBytes, table: partition.table },
      }
    } catch (err) {
      if (!isInstallError(err)) return { kind: 'crash', error: describe(err) }
      return { kind: 'error', code: err.code, message: err.message, cause: err.cause === undefined ? undefined : describe(err.cause) }
    }
  }
  void run().then((outcome) => {
    delay.disable()
    const reply: FromWorker = { type: 'done', outcome, loopMaxMs: delay.max / 1e6 }
    port.postMessage(reply)
  })
})
