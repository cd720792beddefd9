/**
 * Every error answer of the service is JSON `{ code, message }` made by report/install-error's
 * constructors, with the HTTP status its code calls for. fastify's own errors (bad JSON, wrong
 * content type, too large, unknown route, unreadable HTTP) are mapped here, so bad input gets a
 * 4xx and only a bug gets a 500.
 */
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { errors, isInstallError, type InstallError, type InstallErrorCode } from '../report/install-error.js'

const HTTP_STATUS: Partial<Record<InstallErrorCode, number>> = {
  PAYLOAD_MISSING_FIELD: 400,
  PAYLOAD_BAD_FIELD: 400,
  BAD_IMAGE_FORMAT: 400,
  BAD_CHECKSUM_TYPE: 400,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  BUSY: 409,
  NOT_RUNNING: 409,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  SHUTTING_DOWN: 503,
}

/** The HTTP status of an error code: 500 for any code not meant as an answer (a bug). */
export function httpStatusOf (code: InstallErrorCode): number {
  return HTTP_STATUS[code] ?? 500
}

/** Any error thrown in the service (or by fastify) as the answer it gets. */
export function toApiError (err: unknown, options: { bodyLimitBytes: number }): { statusCode: number; error: InstallError } {
  if (isInstallError(err)) return { statusCode: httpStatusOf(err.code), error: err }
  const fastifyError = err as Partial<FastifyError>
  const known = fastifyErrorAnswer(fastifyError.code, options)
  if (known !== undefined) return known
  const status = fastifyError.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { statusCode: status, error: errors.badRequest('the request could not be read', err) }
  }
  return { statusCode: 500, error: errors.serviceError(err) }
}

function fastifyErrorAnswer (code: string | undefined, options: { bodyLimitBytes: number }): { statusCode: number; error: InstallError } | undefined {
  switch (code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return { statusCode: 415, error: errors.unsupportedMediaType() }
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return { statusCode: 413, error: errors.bodyTooLarge(options.bodyLimitBytes) }
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return { statusCode: 400, error: errors.payloadMissingField('request body') }
    // Not reached with payload/payload-json as the parser; kept for any other JSON parser.
    case 'FST_ERR_CTP_INVALID_JSON_BODY': return { statusCode: 400, error: errors.payloadBadField('request body', 'a JSON document without __proto__ or constructor.prototype keys') }
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': return { statusCode: 400, error: errors.badRequest('the Content-Length does not match the body') }
    case 'FST_ERR_BAD_URL': return { statusCode: 400, error: errors.badRequest('the URL is malformed') }
    case 'FST_ERR_NOT_FOUND': return { statusCode: 404, error: errors.notFound() }
    default: return undefined
  }
}

/** fastify's error handler: the answer, and a log line (codes only: a parser's message may quote the body). */
export function handleError (err: FastifyError, request: FastifyRequest, reply: FastifyReply, options: { bodyLimitBytes: number }): void {
  const { statusCode, error } = toApiError(err, options)
  if (statusCode >= 500) request.log.error({ err: error.cause ?? err, code: error.code }, error.message)
  else request.log.info({ statusCode, code: error.code, cause: (err as { code?: unknown }).code }, 'request refused')
  sendError(reply, statusCode, error)
}

export function sendError (reply: FastifyReply, statusCode: number, error: InstallError): void {
  void reply.code(statusCode).type('application/json; charset=utf-8').send(error.toJSON())
}

/**
 * node:http's `clientError` (a request too broken for fastify to see): the same JSON answer,
 * written on the socket, then the socket closed.
 */
export function clientErrorHandler (logger: Logger): (err: Error & { code?: string }, socket: Socket) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const [status, error] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, errors.badRequest('the request took too long to arrive')]
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, errors.badRequest('the headers are too large')]
        : [400, errors.badRequest('it is not valid HTTP')]
    logger.debug({ code: err.code, statusCode: status }, 'client error')
    if (!socket.writable) {
      socket.destroy()
      return
    }
    const body = JSON.stringify(error.toJSON())
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  }
}
