/**
 * Runs one install (or, family `iso`, one read of an image) at a time on the case worker, within a
 * deadline: past it, the install is
 * aborted through its AbortSignal and given a grace period; one that still does not end (its
 * thread never yields) is terminated with its worker, and a fresh worker takes the next case.
 * Either way the case counts as a hang. Peak RSS is sampled here while the case runs.
 */
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { FromWorker, InstallOutcome, ToWorker, WorkerJob } from './case-worker.js'

const WORKER_URL = new URL(`./case-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url)
const RSS_SAMPLE_MS = 50
const ABORT_GRACE_MS = 5000 // 5 s for an aborted install to end on its own

export interface CaseRun {
  /** undefined: the worker had to be terminated. */
  outcome: InstallOutcome | undefined
  /** Did not end by the deadline: `aborted` ended once aborted, `terminated` did not even then. */
  hang: 'aborted' | 'terminated' | undefined
  wallMs: number
  /** Longest event-loop block of the install's thread (the whole wall time when it had to be terminated). */
  loopMaxMs: number
  peakRssBytes: number
}

export class CaseRunner {
  private worker: Worker | undefined
  private listener: ((message: FromWorker | { type: 'died'; error: string }) => void) | undefined

  constructor (private readonly caseTimeoutMs: number) {}

  private start (): Worker {
    const worker = new Worker(WORKER_URL)
    worker.on('message', (message: FromWorker) => this.listener?.(message))
    worker.on('error', (err) => this.listener?.({ type: 'died', error: `worker error: ${err.message}` }))
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = undefined
      this.listener?.({ type: 'died', error: `worker exited with ${code}` })
    })
    this.worker = worker
    return worker
  }

  async run (job: WorkerJob): Promise<CaseRun> {
    const worker = this.worker ?? this.start()
    const started = performance.now()
    let peakRssBytes = process.memoryUsage.rss()
    const sampler = setInterval(() => { peakRssBytes = Math.max(peakRssBytes, process.memoryUsage.rss()) }, RSS_SAMPLE_MS)
    let resolveDone: (value: FromWorker | { type: 'died'; error: string }) => void = () => {}
    const done = new Promise<FromWorker | { type: 'died'; error: string }>((resolve) => { resolveDone = resolve })
    this.listener = (message) => resolveDone(message)
    const timeout = async (ms: number): Promise<undefined> => await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), ms)
      void done.then(() => clearTimeout(timer))
    })
    try {
      worker.postMessage(job satisfies ToWorker)
      let reply = await Promise.race([done, timeout(this.caseTimeoutMs)])
      let hang: CaseRun['hang']
      if (reply === undefined) {
        hang = 'aborted'
        worker.postMessage({ type: 'abort' } satisfies ToWorker)
        reply = await Promise.race([done, timeout(ABORT_GRACE_MS)])
        if (reply === undefined) {
          hang = 'terminated'
          this.worker = undefined
          await worker.terminate()
        }
      }
      const wallMs = performance.now() - started
      peakRssBytes = Math.max(peakRssBytes, process.memoryUsage.rss())
      if (reply === undefined) return { outcome: undefined, hang, wallMs, loopMaxMs: wallMs, peakRssBytes }
      if (reply.type === 'died') return { outcome: { kind: 'crash', error: reply.error }, hang, wallMs, loopMaxMs: 0, peakRssBytes }
      return { outcome: reply.outcome, hang, wallMs, loopMaxMs: reply.loopMaxMs, peakRssBytes }
    } finally {
      clearInterval(sampler)
      this.listener = undefined
    }
  }

  async close (): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    await worker?.terminate()
  }
}
