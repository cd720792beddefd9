import type { InstallEvent, InstallEventListener, StepName } from '../report/progress.js'

const PROGRESS_INTERVAL_MS = 200

/**
 * The install's steps as events: `enter` names the steps under way (the download and the write
 * run together when streaming), ending those that are not any more; `fail` marks those under way
 * as failed; `progress` reports bytes done, at most every 200 ms (the install's one progress
 * throttle, for every step), the latest always sent before the next step change.
 */
export class InstallSteps {
  private current: StepName[] = []
  private unsent: InstallEvent | undefined
  private lastProgressAt = 0

  constructor (private readonly emit: InstallEventListener, private readonly now: () => number = Date.now) {}

  progress (step: StepName, bytes: number, totalBytes: number | undefined): void {
    this.unsent = { type: 'progress', step, bytes, totalBytes }
    if (this.now() - this.lastProgressAt >= PROGRESS_INTERVAL_MS) this.flushProgress()
  }

  enter (...names: StepName[]): void {
    this.flushProgress()
    for (const name of this.current) if (!names.includes(name)) this.step(name, 'done')
    for (const name of names) if (!this.current.includes(name)) this.step(name, 'doing')
    this.current = names
  }

  fail (): void {
    this.unsent = undefined
    for (const name of this.current) this.step(name, 'error')
    this.current = []
  }

  private flushProgress (): void {
    const event = this.unsent
    if (event === undefined) return
    this.unsent = undefined
    this.lastProgressAt = this.now()
    this.emit(event)
  }

  private step (step: StepName, status: 'doing' | 'done' | 'error'): void {
    this.emit({ type: 'step', step, status, at: new Date().toISOString() })
  }
}
