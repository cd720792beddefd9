/**
 * The capture resource: POST /capture/start (the service's disk uploaded as an image, read only)
 * and POST /capture/cancel. A capture is a job as an install is: one at a time, either kind, its
 * status at GET /install/status (`kind: "capture"`, and `capture` once it succeeded: the size, the
 * digest and the install payloads) and its events at GET /install/events.
 */
import type { FastifyPluginAsync } from 'fastify'
import type { InstallJobs } from '../service/job-runner.js'
import { parseCaptureRequest } from '../payload/parse-capture-request.js'

export function captureRoutes (jobs: InstallJobs): FastifyPluginAsync {
  return async (app) => {
    app.post('/capture/start', async (request, reply) => {
      // A refusal names the field (400); 409 while a job runs, 503 while shutting down.
      const { jobId } = jobs.startCapture(parseCaptureRequest(request.body))
      request.log.info({ jobId }, 'capture accepted')
      return reply.code(202).send({ jobId })
    })

    app.post('/capture/cancel', async (request, reply) => {
      // 409 when no capture runs. The result (CAPTURE_CANCELLED) comes in the status.
      const { jobId } = jobs.cancel('capture')
      request.log.warn({ jobId }, 'capture cancel requested')
      return reply.code(202).send({ jobId })
    })
  }
}
