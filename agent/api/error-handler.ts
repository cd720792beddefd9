/**
 * Every error answer of the service is JSON `{ code, message }`: the service's own refusals
 * (ApiError, api-error.ts) and the payload's (InstallError), each with the HTTP status its
 * declaration gives. fastify's own errors (bad JSON, wrong content type, too large, unknown route,
 * unreadable HTTP) are mapped here, so bad input gets a 4xx and only a bug gets a 500.
 */
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { errors, httpStatusOf, isInstallError, type InstallError } from '../errors/install-error.js'
import { apiErrors, isApiError, type ApiError } from '../errors/api-error.js'

/** An error answer: its status and its `{ code, message }`. */
export interface ErrorAnswer {
  statusCode: number
  error: ApiError | InstallError
}

/** The answer with the status its declaration gives: an InstallError that is no refusal of the request is a bug (500). */
function answer (error: ApiError | InstallError): ErrorAnswer {
  return { statusCode: isApiError(error) ? error.status : httpStatusOf(error.code) ?? 500, error }
}

/** Any error thrown in the service (or by fastify) as the answer it gets. */
export function toErrorAnswer (err: unknown, options: { bodyLimitBytes: number }): ErrorAnswer {
  if (isApiError(err) || isInstallError(err)) return answer(err)
  const fastifyError = err as Partial<FastifyError>
  const known = fastifyErrorAnswer(fastifyError.code, options)
  if (known !== undefined) return known
  const status = fastifyError.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { statusCode: status, error: apiErrors.badRequest('the request could not be read', err) }
  }
  return answer(apiErrors.serviceError(err))
}

function fastifyErrorAnswer (code: string | undefined, options: { bodyLimitBytes: number }): ErrorAnswer | undefined {
  switch (code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return answer(apiErrors.unsupportedMediaType())
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return answer(apiErrors.bodyTooLarge(options.bodyLimitBytes))
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return answer(errors.payloadMissingField('request body'))
    // Not reached with payload/payload-json as the parser; kept for any other JSON parser.
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return answer(errors.payloadBadField('request body', 'a JSON document without __proto__ or constructor.prototype keys'))
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': return answer(apiErrors.badRequest('the Content-Length does not match the body'))
    case 'FST_ERR_BAD_URL': return answer(apiErrors.badRequest('the URL is malformed'))
    case 'FST_ERR_NOT_FOUND': return answer(apiErrors.notFound())
    default: return undefined
  }
}

/** fastify's error handler: the answer, and a log line (codes only: a parser's message may quote the body). */
export function handleError (err: FastifyError, request: FastifyRequest, reply: FastifyReply, options: { bodyLimitBytes: number }): void {
  const { statusCode, error } = toErrorAnswer(err, options)
  if (statusCode >= 500) request.log.error({ err: error.cause ?? err, code: error.code }, error.message)
  else request.log.info({ statusCode, code: error.code, cause: (err as { code?: unknown }).code }, 'request refused')
  sendError(reply, { statusCode, error })
}

export function sendError (reply: FastifyReply, { statusCode, error }: ErrorAnswer): void {
  void reply.code(statusCode).type('application/json; charset=utf-8').send(error.toJSON())
}

/** An ApiError sent with its own status. */
export function sendApiError (reply: FastifyReply, error: ApiError): void {
  sendError(reply, answer(error))
}

/**
 * node:http's `clientError` (a request too broken for fastify to see): the same JSON answer,
 * written on the socket, then the socket closed.
 */
export function clientErrorHandler (logger: Logger): (err: Error & { code?: string }, socket: Socket) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const [status, error] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, apiErrors.badRequest('the request took too long to arrive')]
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, apiErrors.badRequest('the headers are too large')]
        : [400, apiErrors.badRequest('it is not valid HTTP')]
    logger.debug({ code: err.code, statusCode: status }, 'client error')
    if (!socket.writable) {
      socket.destroy()
      return
    }
    const body = JSON.stringify(error.toJSON())
    const head = [
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
      'Connection: close',
      'Content-Type: application/json; charset=utf-8',
      `Content-Length: ${Buffer.byteLength(body)}`,
    ]
    socket.end(`${head.join('\r\n')}\r\n\r\n${body}`)
  }
}
