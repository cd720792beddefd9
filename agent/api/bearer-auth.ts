/**
 * `Authorization: Bearer <token>` (RFC 6750 §2.1) on every route but /health.
 *
 * Both tokens are hashed with SHA-256 and the digests compared with timingSafeEqual: the time
 * taken depends neither on where the tokens differ nor on their lengths, so it tells an attacker
 * nothing about the token. The token itself is never logged (service/service-logger also redacts
 * the header).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { apiErrors } from '../errors/api-error.js'
import { sendApiError } from './error-handler.js'

const BEARER = /^Bearer +([\x21-\x7e]+) *$/i

/** What --token-file must hold: visible ASCII without spaces (it travels in a header), 16 characters at least. */
export function checkToken (token: string): string | undefined {
  if (!/^[\x21-\x7e]*$/.test(token)) return 'the token must be visible ASCII characters without spaces'
  if (token.length < 16) return 'the token must be 16 characters at least'
  return undefined
}

export type TokenCheck = (authorization: string | undefined) => boolean

export function bearerTokenCheck (token: string): TokenCheck {
  if (token === '') throw new Error('the bearer token is empty')
  const expected = digest(token)
  return (authorization) => {
    const given = BEARER.exec(authorization ?? '')?.[1]
    // Hash even when the header is absent or malformed, so every refusal takes the same time.
    return timingSafeEqual(digest(given ?? ''), expected) && given !== undefined
  }
}

/** An onRequest hook (synchronous: it runs on every poll): 401 `{ code: UNAUTHORIZED, message }` unless the bearer token is right. */
export function bearerAuthHook (check: TokenCheck): (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void {
  return (request, reply, done) => {
    if (check(request.headers.authorization)) {
      done()
      return
    }
    request.log.info({ url: request.routeOptions.url, method: request.method }, 'unauthorized request')
    void reply.header('www-authenticate', 'Bearer realm="byoi-agent"')
    sendApiError(reply, apiErrors.unauthorized())
  }
}

function digest (value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}
