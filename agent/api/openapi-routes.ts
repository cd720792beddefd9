/** GET /openapi.json: the OpenAPI 3.1 document (api/openapi-document), serialized once. */
import type { FastifyPluginAsync } from 'fastify'
import type { OpenApiDocument } from './openapi-document.js'

export function openApiRoutes (document: OpenApiDocument): FastifyPluginAsync {
  const body = JSON.stringify(document)
  return async (app) => {
    app.get('/openapi.json', async (_request, reply) => reply.type('application/json; charset=utf-8').send(body))
  }
}
