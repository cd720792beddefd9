/**
 * What an install tells while it runs: step changes and byte progress. The CLI draws them; the
 * API (issue 6) keeps them as status and streams them as events.
 */

export type StepName = 'preflight' | 'download' | 'verify' | 'write' | 'gpt' | 'configdrive' | 'finish'

/** The steps in order; in stream mode 'download' and 'write' run together. */
export const STEP_NAMES: readonly StepName[] = ['preflight', 'download', 'verify', 'write', 'gpt', 'configdrive', 'finish']
export type StepStatus = 'todo' | 'doing' | 'done' | 'error'

export interface StepEvent {
  type: 'step'
  step: StepName
  status: StepStatus
  at: string
}

export interface ProgressEvent {
  type: 'progress'
  step: StepName
  bytes: number
  totalBytes: number | undefined
}

export interface LogEvent {
  type: 'note'
  message: string
}

export type InstallEvent = StepEvent | ProgressEvent | LogEvent

export type InstallEventListener = (event: InstallEvent) => void
