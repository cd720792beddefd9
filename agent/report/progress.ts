/**
 * What a job tells while it runs: step changes and byte progress. The CLI draws them; the API
 * keeps them as status and streams them as events. Two kinds of job: an install, and a capture
 * (the disk uploaded as an image), each with its steps.
 */

export type StepName = 'preflight' | 'download' | 'verify' | 'write' | 'gpt' | 'configdrive' | 'finish' | 'scan' | 'upload'

export type JobKind = 'install' | 'capture'

/** An install's steps in order; in stream mode 'download' and 'write' run together. */
export const STEP_NAMES: readonly StepName[] = ['preflight', 'download', 'verify', 'write', 'gpt', 'configdrive', 'finish']

/** A capture's steps in order: the disk opened, scanned (a qcow2's first pass), uploaded, its size checked again. */
export const CAPTURE_STEP_NAMES: readonly StepName[] = ['preflight', 'scan', 'upload', 'finish']

/** Every step name of either kind, for schemas. */
export const ALL_STEP_NAMES: readonly StepName[] = [...new Set([...STEP_NAMES, ...CAPTURE_STEP_NAMES])]

export function stepNamesOf (kind: JobKind): readonly StepName[] {
  return kind === 'capture' ? CAPTURE_STEP_NAMES : STEP_NAMES
}
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
