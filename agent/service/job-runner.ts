/**
 * The service's jobs, installs and captures: one at a time (either kind), each with its own
 * AbortController and child logger.
 *
 * The runner turns runInstall's (or runCapture's) events into the status object (service/job-status), tells its
 * subscribers every change (the API's event stream), saves the status on each step change and at
 * the end (service/job-state-store), and queues each step change and the result for the report
 * URL (service/report-poster). None of these can slow or fail the install: subscribers and saves
 * are guarded, posts are queued.
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { InstallRequest } from '../payload/install-request.js'
import type { CaptureJobRequest } from '../payload/capture-request.js'
import type { CaptureOutcome, CaptureRequest } from '../capture/run-capture.js'
import { apiErrors } from '../errors/api-error.js'
import { errors, isInstallError } from '../errors/install-error.js'
import type { InstallEvent, JobKind } from '../report/progress.js'
import { redactHeaders, safeUrl } from '../report/redact.js'
import type { ReportSink } from './report-poster.js'
import {
  copyStatus,
  freezeStatus,
  idleStatus,
  interruptedStatus,
  JobStatusTracker,
  type CaptureView,
  type DiskView,
  type InstallStatus,
  type ProgressView,
  type ResultView,
  type StepView,
} from './job-status.js'
import { settleInterruptedInstall } from './interrupted-install.js'
import type { DiskWriteRecord, JobStateStore } from './job-state-store.js'
import { runInstall, type InstallOptions, type InstallResult } from '../install/run-install.js'
import { checkFixedDiskGroup } from '../payload/parse-install-request.js'
import type { ChosenDisk } from './install-disk.js'

/** A change, as subscribers (and the event stream) get it. */
export type JobChange =
  | { type: 'status'; status: InstallStatus }
  | { type: 'step'; jobId: string; step: StepView }
  | { type: 'progress'; jobId: string; progress: ProgressView }
  | { type: 'note'; jobId: string; message: string }
  | { type: 'result'; jobId: string; state: 'done' | 'error'; result: ResultView }

export type JobListener = (change: JobChange) => void

/** What the HTTP API needs from the runner (tests give it a fake). */
export interface InstallJobs {
  /** Starts an install; throws ApiError BUSY while a job runs, SHUTTING_DOWN after close(). */
  start: (request: InstallRequest) => { jobId: string }
  /** Starts a capture of the service's disk; the same refusals. */
  startCapture: (request: CaptureJobRequest) => { jobId: string }
  status: () => InstallStatus
  /** Aborts the running job of that kind; throws ApiError NOT_RUNNING when none runs. */
  cancel: (kind?: JobKind) => { jobId: string }
  /** Calls `listener` on every change from now on; returns the unsubscribe function. */
  subscribe: (listener: JobListener) => () => void
}

/** The body POSTed to the report URL. `sequence` orders them per agent run and lets a receiver drop a retried duplicate. */
export type ReportMessage =
  | { event: 'step'; sequence: number; jobId: string; at: string; step: StepView; status: InstallStatus }
  | { event: 'result'; sequence: number; jobId: string; at: string; state: 'done' | 'error'; result: ResultView; status: InstallStatus }

type WithoutDelivery<T> = T extends unknown ? Omit<T, 'sequence' | 'at'> : never

export type InstallFunction = (options: InstallOptions) => Promise<InstallResult>
export type CaptureFunction = (request: CaptureRequest) => Promise<CaptureOutcome>

export interface JobRunnerOptions {
  /** The service's disk: every job's, unless `chooseDisk` chooses each install's. */
  disk: DiskView
  /**
   * `serve --disk auto`: each install's disk, chosen when it starts (the payload's diskGroupId,
   * else the first free disk); throws DISK_NOT_CHOSEN. Without it every install goes to `disk`
   * and a diskGroupId other than 1 is refused (PAYLOAD_BAD_FIELD, 400).
   */
  chooseDisk?: (request: InstallRequest) => Promise<ChosenDisk>
  /** Why `disk` is the disk (`serve --disk hints:…`, chosen at start): each install's first note. */
  diskWhy?: string
  logger: Logger
  /** Passed to each install: --stream, --memory-limit, --config-drive, download tuning. */
  installOptions?: Pick<InstallOptions, 'stream' | 'memoryLimitBytes' | 'configDrive' | 'downloadTuning'>
  store?: JobStateStore
  reporter?: ReportSink
  /** The install itself; runInstall unless a test gives another. */
  install?: InstallFunction
  /** The capture itself; runCapture unless a test gives another. */
  capture?: CaptureFunction
  /** Milliseconds since the epoch (tests move time by hand). */
  now?: () => number
}

interface RunningJob {
  kind: JobKind
  tracker: JobStatusTracker
  controller: AbortController
  logger: Logger
  ended: Promise<void>
  /** Set, and saved synced, just before the install's first write to the disk. */
  diskWrite: DiskWriteRecord | null
}

export class JobRunner implements InstallJobs {
  private current: RunningJob | undefined
  /** The status as last shown; undefined once anything changed. */
  private shown: InstallStatus | undefined
  /** The last job's status once it ended (or the one read back at start), else idle. */
  private last: InstallStatus
  private readonly listeners = new Set<JobListener>()
  private closing = false
  private sequence = 0
  private readonly install: InstallFunction
  private readonly capture: CaptureFunction
  private readonly now: () => number

  private constructor (private readonly options: JobRunnerOptions, last: InstallStatus) {
    this.last = last
    this.install = options.install ?? runInstall
    // Loaded on the first capture (as the CLI does): a service that only installs never loads the
    // capture's modules (S3, the compression pool).
    this.capture = options.capture ?? (async (request) => await (await import('../capture/run-capture.js')).runCapture(request))
    this.now = options.now ?? Date.now
  }

  /**
   * A runner over the state saved in `options.store`: the last result is shown again; a job that
   * was running when the agent stopped is reported (status and report URL) as INTERRUPTED, once
   * the disk it had begun writing (the one recorded, not today's --disk) is made unbootable.
   */
  static async open (options: JobRunnerOptions): Promise<JobRunner> {
    const state = await options.store?.loadState()
    const saved = state?.status
    const runner = new JobRunner(options, idleStatus(options.disk))
    if (state === undefined || saved === undefined || saved.state === 'idle') return runner
    if (saved.state === 'running') {
      // A capture never wrote its disk: nothing to settle, its upload was not completed.
      const { error: failure, note } = saved.kind === 'capture'
        ? { error: errors.captureInterrupted(), note: undefined }
        : await settleInterruptedInstall(state, options.logger)
      const status = interruptedStatus(saved, { code: failure.code, message: failure.message }, runner.now(), note)
      options.logger.error({ jobId: status.jobId, code: failure.code, disk: status.disk.path }, failure.message)
      runner.last = status
      options.store?.save(copyStatus(status))
      runner.report({ event: 'result', jobId: status.jobId ?? '', state: 'error', result: { code: failure.code, message: failure.message }, status })
    } else {
      options.logger.info({ jobId: saved.jobId, kind: saved.kind, state: saved.state, code: saved.result?.code }, 'last job as saved before the restart')
      runner.last = saved
    }
    return runner
  }

  /**
   * The status, frozen, and the same object until something changes: pollers share one copy (the
   * API serializes it once per change, not once per request).
   */
  status (): InstallStatus {
    this.shown ??= freezeStatus(this.current?.tracker.snapshot() ?? copyStatus(this.last))
    return this.shown
  }

  subscribe (listener: JobListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  start (request: InstallRequest): { jobId: string } {
    if (this.options.chooseDisk === undefined) checkFixedDiskGroup(request, this.options.disk.path)
    const job = this.begin('install', {
      source: request.source,
      imageUrl: safeUrl(request.imageUrl),
      imageType: request.imageType,
      checksumType: request.checksum?.type,
      httpHeaders: redactHeaders(Object.fromEntries(request.httpHeaders.map((h) => [h.name, h.value]))),
      diskGroupId: request.diskGroupId,
    })
    job.ended = this.run(job, async () => await this.runInstallJob(job, request))
    return { jobId: job.tracker.jobId }
  }

  startCapture (request: CaptureJobRequest): { jobId: string } {
    const job = this.begin('capture', {
      uploadUrl: request.uploadUrl === undefined ? undefined : safeUrl(request.uploadUrl),
      s3: request.s3 === undefined ? undefined : { endpoint: request.s3.endpoint, bucket: request.s3.bucket, key: request.s3.key },
      format: request.format,
      compress: request.compress,
      checksumType: request.checksumType,
      httpHeaders: redactHeaders(Object.fromEntries(request.httpHeaders.map((h) => [h.name, h.value]))),
    })
    job.ended = this.run(job, async () => await this.runCaptureJob(job, request))
    return { jobId: job.tracker.jobId }
  }

  /** A new job of `kind`, made current, told and saved; refused while one runs or after close(). */
  private begin (kind: JobKind, logged: Record<string, unknown>): RunningJob {
    if (this.closing) throw apiErrors.shuttingDown()
    if (this.current !== undefined) throw apiErrors.busy(this.current.kind, this.current.tracker.jobId)
    const jobId = randomUUID()
    const tracker = new JobStatusTracker(jobId, this.options.disk, this.now(), kind)
    const logger = this.options.logger.child({ jobId })
    const job: RunningJob = { kind, tracker, controller: new AbortController(), logger, ended: Promise.resolve(), diskWrite: null }
    this.current = job
    this.shown = undefined
    // An install under --disk auto has its disk chosen once it runs (logged then).
    const disk = kind === 'install' && this.options.chooseDisk !== undefined ? 'chosen when the install starts' : this.options.disk.path
    logger.info({ disk, ...logged }, `${kind} started`)
    this.notify({ type: 'status', status: tracker.snapshot() })
    this.save(job)
    return job
  }

  cancel (kind?: JobKind): { jobId: string } {
    const job = this.current
    if (job === undefined || (kind !== undefined && job.kind !== kind)) throw apiErrors.notRunning(kind ?? 'install')
    job.logger.warn('cancel requested')
    job.controller.abort(new Error('cancelled through the API'))
    return { jobId: job.tracker.jobId }
  }

  /** Resolves when no job runs and the last status is saved. */
  async idle (): Promise<void> {
    while (this.current !== undefined) await this.current.ended
    await this.options.store?.flush()
  }

  /**
   * Shutdown: no job starts any more, the running one is cancelled (its cancel leaves the disk
   * untouched or unbootable, as runInstall does), and its end, the last save and the report
   * queue (at most `reportTimeoutMs`) are waited for.
   */
  async close (options: { reportTimeoutMs?: number } = {}): Promise<void> {
    this.closing = true
    if (this.current !== undefined) {
      this.current.logger.warn(`shutting down: cancelling the ${this.current.kind}`)
      this.current.controller.abort(new Error('the agent is shutting down'))
    }
    await this.idle()
    await this.options.reporter?.close(options.reportTimeoutMs)
  }

  /** The job's end, whatever it is: its result saved (synced), then told. */
  private async run (job: RunningJob, work: () => Promise<{ result: ResultView; capture?: CaptureView }>): Promise<void> {
    const { tracker } = job
    const { result, capture } = await work()
    tracker.finish(result, this.now(), capture)
    const status = tracker.snapshot()
    // On the disk (synced) before the job ends or its result is told: a kill between the install's
    // end and this save would otherwise leave "running, writing began", and the next start would
    // zero a disk that was installed.
    await this.options.store?.saveNow(copyStatus(status), job.diskWrite)
    this.last = status
    this.current = undefined
    this.shown = undefined
    const state = status.state === 'done' ? 'done' : 'error'
    this.report({ event: 'result', jobId: tracker.jobId, state, result, status })
    this.notify({ type: 'result', jobId: tracker.jobId, state, result })
  }

  private async runInstallJob (job: RunningJob, request: InstallRequest): Promise<{ result: ResultView }> {
    const { logger } = job
    try {
      // Awaited only under --disk auto: a fixed disk's install starts at once, as start() returns.
      const chosen = this.options.chooseDisk === undefined ? undefined : await this.options.chooseDisk(request)
      const diskPath = this.installDisk(job, chosen)
      const installed = await this.install({
        ...this.options.installOptions,
        request,
        diskPath,
        signal: job.controller.signal,
        logger,
        onEvent: (event) => this.onEvent(job, event),
        beforeFirstWrite: async (disk) => await this.recordDiskWrite(job, disk),
      })
      logger.info({ code: installed.code, bytes: installed.bytes, mode: installed.mode }, installed.message)
      return { result: { code: installed.code, message: installed.message } }
    } catch (err) {
      const failure = isInstallError(err) ? err : errors.internalError(err)
      if (!isInstallError(err)) logger.error({ err }, 'unexpected error from the install')
      logger.warn({ code: failure.code }, failure.message)
      return { result: { code: failure.code, message: failure.message } }
    }
  }

  /**
   * The install's disk: the service's, or the one `chooseDisk` chose for it (--disk auto), then
   * shown in the status. Why it is the disk, when the agent chose it, is the install's first note
   * and a log line.
   */
  private installDisk (job: RunningJob, chosen: ChosenDisk | undefined): string {
    const { disk, why } = chosen ?? { disk: this.options.disk, why: this.options.diskWhy }
    if (chosen !== undefined) {
      job.tracker.setDisk(disk)
      this.shown = undefined
      this.notify({ type: 'status', status: job.tracker.snapshot() })
      this.save(job)
    }
    if (why !== undefined) {
      job.logger.info({ disk }, why)
      this.onEvent(job, { type: 'note', message: why })
    }
    return disk.path
  }

  /** A capture of the service's disk (opened read only: it is never written, so no write is recorded). */
  private async runCaptureJob (job: RunningJob, request: CaptureJobRequest): Promise<{ result: ResultView; capture?: CaptureView }> {
    const { logger } = job
    try {
      const captured = await this.capture({
        diskPath: this.options.disk.path,
        ...(request.s3 === undefined ? { uploadUrl: request.uploadUrl } : { s3: request.s3 }),
        headers: request.httpHeaders,
        format: request.format,
        compress: request.compress,
        checksumType: request.checksumType,
        signal: job.controller.signal,
        logger,
        onEvent: (event) => this.onEvent(job, event),
      })
      logger.info({ code: captured.code, bytes: captured.bytes, format: captured.format }, captured.message)
      const { bytes, format, digest, virtualSizeBytes, payloads } = captured
      return { result: { code: captured.code, message: captured.message }, capture: { bytes, format, digest, virtualSizeBytes, payloads } }
    } catch (err) {
      const failure = isInstallError(err) ? err : errors.captureInternalError(err)
      if (!isInstallError(err)) logger.error({ err }, 'unexpected error from the capture')
      logger.warn({ code: failure.code }, failure.message)
      return { result: { code: failure.code, message: failure.message } }
    }
  }

  private onEvent (job: RunningJob, event: InstallEvent): void {
    try {
      const change = job.tracker.apply(event, this.now())
      if (change === undefined) return
      this.shown = undefined
      const jobId = job.tracker.jobId
      // The install sends progress at most every 200 ms and the latest before each step change
      // (install/install-steps): passed on as it comes.
      if (change.type === 'progress') {
        this.notify({ type: 'progress', jobId, progress: change.progress })
        return
      }
      if (change.type === 'note') {
        this.notify({ type: 'note', jobId, message: change.message })
        return
      }
      // A step change: saved and reported.
      job.logger.info({ step: change.step.name, status: change.step.status }, 'step')
      this.notify({ type: 'step', jobId, step: change.step })
      this.save(job)
      this.report({ event: 'step', jobId, step: change.step, status: job.tracker.snapshot() })
    } catch (err) {
      // Bookkeeping must never break the install.
      job.logger.error({ err }, 'could not record an install event')
    }
  }

  private save (job: RunningJob): void {
    this.options.store?.save(job.tracker.snapshot(), job.diskWrite)
  }

  /**
   * runInstall's beforeFirstWrite: the disk about to be written is recorded and the state synced
   * before the install goes on, so an agent killed from here on is known, at the next start, to
   * have left a part-written disk. A failed save is logged and the install goes on, as with every
   * save (the state never fails an install); an agent killed after that cannot tell.
   */
  private async recordDiskWrite (job: RunningJob, disk: { path: string; sizeBytes: number }): Promise<void> {
    job.diskWrite = { path: disk.path, sizeBytes: disk.sizeBytes, at: new Date(this.now()).toISOString() }
    const store = this.options.store
    if (store !== undefined && !await store.saveNow(job.tracker.snapshot(), job.diskWrite)) {
      job.logger.error({ disk: disk.path }, 'could not record that writing begins; a kill from now on cannot be told at the next start')
    }
  }

  private report (message: WithoutDelivery<ReportMessage>): void {
    const reporter = this.options.reporter
    if (reporter === undefined) return
    const body = { ...message, sequence: ++this.sequence, at: new Date(this.now()).toISOString() }
    reporter.post(body, { keep: message.event === 'result' })
  }

  private notify (change: JobChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change)
      } catch (err) {
        this.options.logger.error({ err }, 'a status subscriber failed')
      }
    }
  }
}
