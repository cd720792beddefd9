/**
 * The status of the service's job (an install or a capture), as `GET /install/status` shows it:
 * built from the job's events (report/progress), with a throughput and an ETA measured over a
 * sliding window. Pure bookkeeping: the clock is passed in, nothing here does I/O.
 */
import { isResultCode, type ResultCode } from '../errors/install-error.js'
import { stepNamesOf, type InstallEvent, type JobKind, type StepName, type StepStatus } from '../report/progress.js'

export type JobState = 'idle' | 'running' | 'done' | 'error'

export interface StepView {
  name: StepName
  status: StepStatus
  startedAt: string | null
  endedAt: string | null
}

export interface ProgressView {
  step: StepName
  bytes: number
  /** null while the size is unknown (no Content-Length). */
  totalBytes: number | null
  bytesPerSecond: number
  /** null when the size or the rate is unknown. */
  etaSeconds: number | null
}

export interface ResultView {
  code: ResultCode
  message: string
}

/** The target disk, and how it was chosen (`--disk auto` says which it took). */
export interface DiskView {
  path: string
  auto: boolean
  sizeBytes: number | null
  model: string | null
}

/** What a capture made, once it succeeded: enough to install the image elsewhere as it is. */
export interface CaptureView {
  /** Bytes uploaded (the image file's size). */
  bytes: number
  /** qcow2, raw, zstd-compressed raw… */
  format: string
  digest: { type: 'sha256' | 'sha512'; hex: string }
  virtualSizeBytes: number
  /** The install payload in both of OVH's shapes, the URL without credentials. */
  payloads: {
    installStart: { templateName: string; userMetadata: Array<{ key: string; value: string }> }
    reinstall: { operatingSystem: string; customizations: Record<string, string> }
  }
}

export interface InstallStatus {
  state: JobState
  /** null while idle. */
  kind: JobKind | null
  jobId: string | null
  disk: DiskView
  startedAt: string | null
  endedAt: string | null
  steps: StepView[]
  progress: ProgressView | null
  result: ResultView | null
  /** The job's notes so far, oldest first: a switch to streaming, the ConfigDrive mount check's outcome. */
  notes: string[]
  /** A capture's outcome once it succeeded; null otherwise. */
  capture: CaptureView | null
}

/** What changed with one event, for the live stream and the report URL. */
export type StatusChange =
  | { type: 'step'; step: StepView }
  | { type: 'progress'; progress: ProgressView }
  | { type: 'note'; message: string }

export function idleStatus (disk: DiskView): InstallStatus {
  return {
    state: 'idle', kind: null, jobId: null, disk, startedAt: null, endedAt: null, steps: freshSteps(), progress: null, result: null, notes: [], capture: null,
  }
}

export function freshSteps (kind: JobKind = 'install'): StepView[] {
  return stepNamesOf(kind).map((name) => ({ name, status: 'todo', startedAt: null, endedAt: null }))
}

/** A deep copy of a capture's outcome. */
function copyCapture (capture: CaptureView): CaptureView {
  return {
    ...capture,
    digest: { ...capture.digest },
    payloads: {
      installStart: { ...capture.payloads.installStart, userMetadata: capture.payloads.installStart.userMetadata.map((entry) => ({ ...entry })) },
      reinstall: { ...capture.payloads.reinstall, customizations: { ...capture.payloads.reinstall.customizations } },
    },
  }
}

/** A deep copy: callers may keep or change it without touching the job's. */
export function copyStatus (status: InstallStatus): InstallStatus {
  return {
    ...status,
    disk: { ...status.disk },
    steps: status.steps.map((step) => ({ ...step })),
    progress: status.progress === null ? null : { ...status.progress },
    result: status.result === null ? null : { ...status.result },
    notes: [...status.notes],
    capture: status.capture === null ? null : copyCapture(status.capture),
  }
}

/** Freezes a status and everything in it: a status shared between readers cannot be changed by one. */
export function freezeStatus (status: InstallStatus): InstallStatus {
  Object.freeze(status.disk)
  for (const step of status.steps) Object.freeze(step)
  Object.freeze(status.steps)
  if (status.progress !== null) Object.freeze(status.progress)
  if (status.result !== null) Object.freeze(status.result)
  Object.freeze(status.notes)
  if (status.capture !== null) deepFreeze(status.capture)
  return Object.freeze(status)
}

function deepFreeze (value: object): void {
  for (const inner of Object.values(value)) if (typeof inner === 'object' && inner !== null) deepFreeze(inner as object)
  Object.freeze(value)
}

/** The throughput window: long enough to smooth slab-sized bursts, short enough to follow a slowdown. */
export const RATE_WINDOW_MS = 5000 // 5 s
/** Notes kept in a status: an install makes a few; a bound keeps a runaway one from growing it. */
export const MAX_NOTES = 32

/**
 * Bytes per second over the last RATE_WINDOW_MS of samples. Until half a second has passed the
 * rate is 0 (a first burst from the socket buffers says nothing about the link).
 */
export class RateMeter {
  private samples: Array<{ atMs: number; bytes: number }> = []

  reset (): void {
    this.samples = []
  }

  add (atMs: number, bytes: number): number {
    const last = this.samples.at(-1)
    if (last !== undefined && bytes < last.bytes) this.samples = [] // the download restarted from byte 0
    this.samples.push({ atMs, bytes })
    // Keep one sample at or before the window's start, so the window is always full once it can be.
    while (this.samples.length > 2 && (this.samples[1]?.atMs ?? atMs) <= atMs - RATE_WINDOW_MS) this.samples.shift()
    const first = this.samples[0]
    if (first === undefined) return 0
    const spanMs = atMs - first.atMs
    return spanMs >= 500 ? ((bytes - first.bytes) * 1000) / spanMs : 0
  }
}

/** One job's status, fed with the job's events in order. */
export class JobStatusTracker {
  private readonly status: InstallStatus
  private readonly rate = new RateMeter()

  constructor (jobId: string, disk: DiskView, startedAtMs: number, kind: JobKind = 'install') {
    this.status = { ...idleStatus(disk), state: 'running', kind, jobId, startedAt: new Date(startedAtMs).toISOString(), steps: freshSteps(kind) }
  }

  get jobId (): string {
    return this.status.jobId ?? ''
  }

  /** The job's disk, once chosen for it (serve --disk auto chooses each install's when it starts). */
  setDisk (disk: DiskView): void {
    this.status.disk = { ...disk }
  }

  /** Applies one event; returns what changed, or undefined when nothing did. */
  apply (event: InstallEvent, nowMs: number): StatusChange | undefined {
    if (this.status.state !== 'running') return undefined
    if (event.type === 'note') {
      if (this.status.notes.length < MAX_NOTES) this.status.notes.push(event.message)
      return { type: 'note', message: event.message }
    }
    if (event.type === 'step') {
      const step = this.status.steps.find((s) => s.name === event.step)
      if (step === undefined || step.status === event.status) return undefined
      step.status = event.status
      if (event.status === 'doing') {
        step.startedAt = event.at
        step.endedAt = null
      } else if (event.status === 'done' || event.status === 'error') {
        step.startedAt ??= event.at
        step.endedAt = event.at
      }
      return { type: 'step', step: { ...step } }
    }
    const previous = this.status.progress
    if (previous?.step !== event.step) this.rate.reset()
    const bytesPerSecond = Math.round(this.rate.add(nowMs, event.bytes))
    const totalBytes = event.totalBytes ?? null
    const etaSeconds = totalBytes !== null && bytesPerSecond > 0 ? Math.max(0, Math.ceil((totalBytes - event.bytes) / bytesPerSecond)) : null
    this.status.progress = { step: event.step, bytes: event.bytes, totalBytes, bytesPerSecond, etaSeconds }
    return { type: 'progress', progress: { ...this.status.progress } }
  }

  /** The job ended: its result, and any step still `doing` marked `error` (on failure) or `done`; a capture's outcome. */
  finish (result: ResultView, nowMs: number, capture?: CaptureView): void {
    if (this.status.state !== 'running') return
    const at = new Date(nowMs).toISOString()
    const failed = result.code !== 'INSTALLED' && result.code !== 'CAPTURED'
    if (!failed && capture !== undefined) this.status.capture = copyCapture(capture)
    for (const step of this.status.steps) {
      if (step.status !== 'doing') continue
      step.status = failed ? 'error' : 'done'
      step.endedAt = at
    }
    this.status.state = failed ? 'error' : 'done'
    this.status.endedAt = at
    this.status.result = { ...result }
    if (this.status.progress !== null) this.status.progress = { ...this.status.progress, etaSeconds: failed ? null : 0 }
  }

  snapshot (): InstallStatus {
    return copyStatus(this.status)
  }
}

/**
 * A status read back after a restart. A job that was `running` when the agent stopped is over:
 * reported as an error with `result`, its unfinished steps marked `error`.
 */
export function interruptedStatus (saved: InstallStatus, result: ResultView, nowMs: number, note?: string): InstallStatus {
  const at = new Date(nowMs).toISOString()
  const status = copyStatus(saved)
  for (const step of status.steps) {
    if (step.status !== 'doing') continue
    step.status = 'error'
    step.endedAt = at
  }
  if (status.progress !== null) status.progress = { ...status.progress, bytesPerSecond: 0, etaSeconds: null }
  if (note !== undefined && status.notes.length < MAX_NOTES) status.notes.push(note)
  return { ...status, state: 'error', endedAt: at, result: { ...result } }
}

const STATES: readonly JobState[] = ['idle', 'running', 'done', 'error']
const STEP_STATUSES: readonly StepStatus[] = ['todo', 'doing', 'done', 'error']

/** Checks that a value read from disk is a status this version can show; undefined if not. */
export function asInstallStatus (value: unknown): InstallStatus | undefined {
  if (!isRecord(value)) return undefined
  const { state, jobId, disk, startedAt, endedAt, steps, progress, result } = value
  // Notes came with the agent that wrote the state; one before them saved none.
  const notes = value['notes'] ?? []
  if (!Array.isArray(notes) || !notes.every((note) => typeof note === 'string')) return undefined
  if (typeof state !== 'string' || !(STATES as readonly string[]).includes(state)) return undefined
  if (!isNullableString(jobId) || !isNullableString(startedAt) || !isNullableString(endedAt)) return undefined
  const diskOk = isRecord(disk) && typeof disk['path'] === 'string' && typeof disk['auto'] === 'boolean' &&
    isNullableNumber(disk['sizeBytes']) && isNullableString(disk['model'])
  if (!diskOk) return undefined
  // Jobs came in two kinds with captures; a state saved before them holds an install, or idle.
  const kind = value['kind'] ?? (state === 'idle' ? null : 'install')
  if (kind !== null && kind !== 'install' && kind !== 'capture') return undefined
  const names = stepNamesOf(kind ?? 'install')
  if (!Array.isArray(steps) || steps.length !== names.length) return undefined
  const stepsOk = steps.every((step: unknown, i) => isRecord(step) && step['name'] === names[i] &&
    typeof step['status'] === 'string' && (STEP_STATUSES as readonly string[]).includes(step['status']) &&
    isNullableString(step['startedAt']) && isNullableString(step['endedAt']))
  if (!stepsOk) return undefined
  const progressOk = progress === null || (isRecord(progress) &&
    typeof progress['step'] === 'string' && (names as readonly string[]).includes(progress['step']) &&
    typeof progress['bytes'] === 'number' && isNullableNumber(progress['totalBytes']) &&
    typeof progress['bytesPerSecond'] === 'number' && isNullableNumber(progress['etaSeconds']))
  if (!progressOk) return undefined
  const resultOk = result === null || (isRecord(result) &&
    isResultCode(result['code']) && typeof result['message'] === 'string')
  if (!resultOk) return undefined
  const capture = value['capture'] ?? null
  if (capture !== null && !isCaptureView(capture)) return undefined
  return copyStatus({ ...(value as unknown as InstallStatus), kind, notes, capture })
}

function isCaptureView (value: unknown): value is CaptureView {
  if (!isRecord(value) || typeof value['bytes'] !== 'number' || typeof value['format'] !== 'string') return false
  if (typeof value['virtualSizeBytes'] !== 'number') return false
  const { digest, payloads } = value
  if (!isRecord(digest) || (digest['type'] !== 'sha256' && digest['type'] !== 'sha512') || typeof digest['hex'] !== 'string') return false
  if (!isRecord(payloads) || !isRecord(payloads['installStart']) || !isRecord(payloads['reinstall'])) return false
  const { templateName, userMetadata } = payloads['installStart']
  const { operatingSystem, customizations } = payloads['reinstall']
  return typeof templateName === 'string' && typeof operatingSystem === 'string' &&
    Array.isArray(userMetadata) &&
    userMetadata.every((entry: unknown) => isRecord(entry) && typeof entry['key'] === 'string' && typeof entry['value'] === 'string') &&
    isRecord(customizations) && Object.values(customizations).every((entry) => typeof entry === 'string')
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isNullableString (value: unknown): value is string | null {
  return value === null || typeof value === 'string'
}

function isNullableNumber (value: unknown): value is number | null {
  return value === null || (typeof value === 'number' && Number.isFinite(value))
}
