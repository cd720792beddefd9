import type { InstallEventListener, StepName } from '../report/progress.js'

/**
 * The install's steps as events: `enter` names the steps under way (the download and the write
 * run together when streaming), ending those that are not any more; `fail` marks those under way
 * as failed.
 */
export class InstallSteps {
  private current: StepName[] = []

  constructor (private readonly emit: InstallEventListener) {}

  enter (...names: StepName[]): void {
    for (const name of this.current) if (!names.includes(name)) this.step(name, 'done')
    for (const name of names) if (!this.current.includes(name)) this.step(name, 'doing')
    this.current = names
  }

  fail (): void {
    for (const name of this.current) this.step(name, 'error')
    this.current = []
  }

  private step (step: StepName, status: 'doing' | 'done' | 'error'): void {
    this.emit({ type: 'step', step, status, at: new Date().toISOString() })
  }
}
