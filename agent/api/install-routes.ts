/**
 * The install resource: POST /install/start, GET /install/status, POST /install/cancel.
 * Refusals are thrown (the payload's as InstallErrors, the job runner's as ApiErrors) and answered
 * by the app's error handler (error-handler).
 */
import type { FastifyPluginAsync } from 'fastify'
import type { InstallJobs } from '../service/job-runner.js'
import type { InstallStatus } from '../service/job-status.js'
import { parseInstallRequest } from '../payload/parse-install-request.js'

export function installRoutes (jobs: InstallJobs): FastifyPluginAsync {
  return async (app) => {
    app.post('/install/start', async (request, reply) => {
      // Either body shape; a refusal names the field (400).
      const installRequest = parseInstallRequest(request.body)
      // 409 while a job runs, 503 while shutting down.
      const { jobId } = jobs.start(installRequest)
      request.log.info({ jobId }, 'install accepted')
      return reply.code(202).send({ jobId })
    })

    // Polled often: the body is serialized once per status object (the runner hands out the same
    // frozen object until something changes), and the handler is synchronous.
    let shown: InstallStatus | undefined
    let body = ''
    app.get('/install/status', (_request, reply) => {
      const status = jobs.status()
      if (status !== shown) {
        shown = status
        body = JSON.stringify(status)
      }
      void reply.header('cache-control', 'no-store').type('application/json; charset=utf-8').send(body)
    })

    app.post('/install/cancel', async (request, reply) => {
      // 409 when no install runs. The result (CANCELLED or CANCELLED_UNTOUCHED) comes in the status.
      const { jobId } = jobs.cancel('install')
      request.log.warn({ jobId }, 'cancel requested')
      return reply.code(202).send({ jobId })
    })
  }
}
