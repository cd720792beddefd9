/**
 * The service's own refusal of a request: `ApiError { code, message }` with the HTTP status it is
 * answered with, made only by `apiErrors.*`, one constructor per code derived from its declaration
 * (api-error-declarations.ts). The job runner throws the ones about jobs (BUSY, NOT_RUNNING,
 * SHUTTING_DOWN); the app's error handler (api/error-handler.ts) the ones about HTTP.
 */
import { constructorsOf } from './message-declaration.js'
import { apiErrorDeclarations } from './api-error-declarations.js'

export type ApiErrorCode = keyof typeof apiErrorDeclarations

export class ApiError extends Error {
  readonly code: ApiErrorCode
  /** The HTTP status of the answer. */
  readonly status: number

  constructor (code: ApiErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'ApiError'
    this.code = code
    this.status = apiErrorDeclarations[code].status
  }

  toJSON (): { code: ApiErrorCode; message: string } {
    return { code: this.code, message: this.message }
  }
}

/** The constructors, one per code, each named and typed by its declaration: `apiErrors.busy(jobId)`… */
export const apiErrors = constructorsOf(apiErrorDeclarations, (code, message, cause) => new ApiError(code, message, { cause }))

/** Matched on name and code, as isInstallError does. */
export function isApiError (err: unknown): err is ApiError {
  if (!(err instanceof Error) || err.name !== 'ApiError') return false
  const code: unknown = (err as Error & { code?: unknown }).code
  return typeof code === 'string' && Object.hasOwn(apiErrorDeclarations, code)
}
