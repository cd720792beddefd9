/** GET /health: the agent answers. No authentication, and nothing about the job. */
import type { FastifyPluginAsync } from 'fastify'

export function healthRoutes (): FastifyPluginAsync {
  return async (app) => {
    app.get('/health', async (_request, reply) => reply.header('cache-control', 'no-store').send({ status: 'ok' }))
  }
}
