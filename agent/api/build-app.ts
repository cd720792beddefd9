/**
 * The HTTP service around the install pipeline. `buildApp` makes the fastify instance and never
 * listens: `byoi-agent serve` (cli.ts) listens, the tests use `inject()` or `listen({ port: 0 })`.
 *
 * One plugin per resource: install (start, status, cancel), install events (SSE), health,
 * openapi. All but health sit behind the bearer token. Every error answer is `{ code, message }`.
 */
import type { Server as HttpsServer } from 'node:https'
import { fastify, LogController, type FastifyError, type FastifyHttpsOptions, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Logger } from 'pino'
import type { InstallJobs } from '../service/job-runner.js'
import { parsePayloadJson } from '../payload/payload-json.js'
import { apiErrors } from '../errors/api-error.js'
import { clientErrorHandler, handleError, sendApiError, sendError, toErrorAnswer } from './error-handler.js'
import { bearerAuthHook, bearerTokenCheck } from './bearer-auth.js'
import { healthRoutes } from './health-routes.js'
import { captureRoutes } from './capture-routes.js'
import { installEvents } from './install-events.js'
import { installRoutes } from './install-routes.js'
import { agentVersion, buildOpenApiDocument, type OpenApiDocument } from './openapi-document.js'
import { openApiRoutes } from './openapi-routes.js'

/**
 * The largest request body. configDriveUserData may hold 16 MiB (payload/parse-install-request);
 * sent as a JSON string it grows by its escapes (`\n`, `\"`…: a shell script gains a few percent),
 * and the other fields are small. 20 MiB takes that with room to spare, and bounds what an
 * authenticated client can make the agent hold in memory.
 */
export const BODY_LIMIT_BYTES = 20 * 1024 * 1024 // 20 MiB

export interface AppDeps {
  jobs: InstallJobs
  /** The bearer token every route but /health requires. */
  token: string
  logger: Logger
  /** Default: built from schemas/ with this package's version. */
  openapi?: OpenApiDocument
  /** TLS when both are given (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer }
  bodyLimitBytes?: number
  /** Time between the event stream's keep-alive comments (default 15 s). */
  heartbeatMs?: number
  /** The reconnection time the event stream sends to clients (default 2 s). */
  eventsRetryMs?: number
}

export function buildApp (deps: AppDeps): FastifyInstance {
  const bodyLimitBytes = deps.bodyLimitBytes ?? BODY_LIMIT_BYTES
  const logger = deps.logger.child({ component: 'http' })
  const options: FastifyServerOptions = {
    loggerInstance: logger,
    bodyLimit: bodyLimitBytes,
    // Requests are logged by the onResponse hook below, at debug level: 50 pollers must not flood the log.
    logController: new LogController({ disableRequestLogging: true }),
    // While closing, requests are still answered (status, events); POST /install/start gets SHUTTING_DOWN.
    return503OnClosing: false,
    clientErrorHandler: clientErrorHandler(logger),
    // fastify's routing errors (a malformed URL) go through the same mapping.
    frameworkErrors: (error, _request, reply) => {
      sendError(reply, toErrorAnswer(error, { bodyLimitBytes }))
    },
  }
  // With cert and key fastify makes an https.Server; the instance is used the same way (listen,
  // inject, close), so it is typed as the plain HTTP one.
  const app = deps.tls === undefined
    ? fastify(options)
    : fastify({ ...options, https: { cert: deps.tls.cert, key: deps.tls.key } } as unknown as FastifyHttpsOptions<HttpsServer>) as unknown as FastifyInstance

  // Only JSON bodies (no text/plain: 415). An empty body counts as none, so a bodiless
  // `POST /install/cancel` sent with a JSON content type is fine; /install/start then says
  // which body it expected.
  app.removeAllContentTypeParsers()
  // The JSON is read as `byoi-agent install` reads a payload file (payload/payload-json).
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: bodyLimitBytes }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (text.trim() === '') {
      done(null, undefined)
      return
    }
    let parsed: unknown
    try {
      parsed = parsePayloadJson(text, 'request body')
    } catch (err) {
      done(err as Error, undefined)
      return
    }
    done(null, parsed)
  })

  app.setErrorHandler((err: FastifyError, request, reply) => handleError(err, request, reply, { bodyLimitBytes }))
  app.setNotFoundHandler((request, reply) => {
    request.log.debug({ method: request.method }, 'no such route')
    sendApiError(reply, apiErrors.notFound())
  })
  // One line per request at debug level (5xx are logged by the error handler). Only when debug is
  // on: the hook costs on every poll.
  if (logger.isLevelEnabled('debug')) {
    app.addHook('onResponse', (request, reply, done) => {
      request.log.debug({ method: request.method, route: request.routeOptions.url, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request')
      done()
    })
  }

  void app.register(healthRoutes())
  const openapi = deps.openapi ?? buildOpenApiDocument({ version: agentVersion(), bodyLimitBytes })
  const check = bearerTokenCheck(deps.token)
  void app.register(async (authenticated) => {
    authenticated.addHook('onRequest', bearerAuthHook(check))
    await authenticated.register(installRoutes(deps.jobs))
    await authenticated.register(captureRoutes(deps.jobs))
    await authenticated.register(installEvents(deps.jobs, { heartbeatMs: deps.heartbeatMs, retryMs: deps.eventsRetryMs }))
    await authenticated.register(openApiRoutes(openapi))
  })
  return app
}
