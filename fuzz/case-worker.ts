/**
 * The worker thread that runs the installs, one at a time, with the agent's own runInstall (not
 * mocked). It lives apart from the supervisor so that an install that never yields (a spinning
 * parser) can still be timed out, counted as a hang and ended with worker.terminate().
 * Its event-loop delay is measured here, where the install runs.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parentPort } from 'node:worker_threads'
import { runInstall, type InstallOptions } from '../agent/install/run-install.js'
import { isInstallError } from '../agent/errors/install-error.js'

export type WorkerInstallOptions = Pick<InstallOptions, 'request' | 'diskPath' | 'stream' | 'memoryLimitBytes' | 'downloadTuning'>

export type ToWorker = { type: 'run'; options: WorkerInstallOptions } | { type: 'abort' }

export type InstallOutcome =
  | { kind: 'installed'; bytes: number; table: string; configDrive: { offsetBytes: number; sizeBytes: number; table: string } }
  | { kind: 'error'; code: string; message: string; cause: string | undefined }
  /** Not an InstallError: a crash. */
  | { kind: 'crash'; error: string }

export interface FromWorker { type: 'done'; outcome: InstallOutcome; loopMaxMs: number }

function describe (err: unknown): string {
  if (err instanceof Error) {
    const at = err.stack === undefined ? '' : ` @ ${err.stack.split('\n').slice(1, 3).map((l) => l.trim()).join(' < ')}`
    return `${err.name}: ${err.message}${at}`
  }
  return String(err)
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
