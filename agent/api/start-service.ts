/**
 * `byoi-agent serve` once its options are read: the job runner over the saved state, the report
 * URL's poster, the app, listening. `close()` is the graceful shutdown: no new job, the running
 * one cancelled and waited for, the reports flushed (bounded), then the server closed.
 */
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { JobRunner, type InstallFunction, type JobRunnerOptions } from '../service/job-runner.js'
import type { DiskView } from '../service/job-status.js'
import { JobStateStore } from '../service/job-state-store.js'
import { ReportPoster, type ReportPosterOptions } from '../service/report-poster.js'
import { safeUrl } from '../report/redact.js'
import { buildApp, type AppDeps } from './build-app.js'

export interface ServiceOptions {
  host: string
  port: number
  token: string
  disk: DiskView
  /** serve --disk auto: each install's disk chosen when it starts (JobRunnerOptions). */
  chooseDisk?: JobRunnerOptions['chooseDisk']
  /** serve --disk hints:…: why `disk` is the disk, each install's first note. */
  diskWhy?: string
  stateDir: string
  logger: Logger
  reportUrl?: string
  tls?: AppDeps['tls']
  installOptions?: JobRunnerOptions['installOptions']
  /** Tests: a fake install, faster report retries, a short heartbeat. */
  install?: InstallFunction
  reportTuning?: Omit<ReportPosterOptions, 'url' | 'logger'>
  heartbeatMs?: number
}

export interface Service {
  /** `http://HOST:PORT` or `https://…`, with the port actually bound. */
  url: string
  app: FastifyInstance
  runner: JobRunner
  close: () => Promise<void>
}

export async function startService (options: ServiceOptions): Promise<Service> {
  const { logger } = options
  const reporter = options.reportUrl === undefined ? undefined : new ReportPoster({ url: options.reportUrl, logger, ...options.reportTuning })
  const runner = await JobRunner.open({
    disk: options.disk,
    chooseDisk: options.chooseDisk,
    diskWhy: options.diskWhy,
    logger,
    installOptions: options.installOptions,
    store: new JobStateStore(options.stateDir, logger),
    reporter,
    install: options.install,
  })
  const app = buildApp({ jobs: runner, token: options.token, logger, tls: options.tls, heartbeatMs: options.heartbeatMs })
  try {
    await app.listen({ host: options.host, port: options.port })
  } catch (err) {
    await runner.close({ reportTimeoutMs: 0 })
    throw err
  }
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : options.port
  const host = options.host.includes(':') ? `[${options.host}]` : options.host
  const url = `${options.tls === undefined ? 'http' : 'https'}://${host}:${port}`
  logger.info({
    url,
    disk: options.disk,
    stateDir: options.stateDir,
    reportUrl: options.reportUrl === undefined ? undefined : safeUrl(options.reportUrl),
    tls: options.tls !== undefined,
  }, 'listening')

  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= (async () => {
      logger.info('shutting down')
      // The server keeps answering meanwhile: status and events show the cancelled job's result.
      await runner.close()
      await app.close()
      logger.info('stopped')
    })()
    return closing
  }
  return { url, app, runner, close }
}
