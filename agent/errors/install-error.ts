/**
 * The failure of an install: `InstallError { code, message }`, made only by `errors.*`, one
 * constructor per code derived from its declaration (install-error-declarations.ts). Clients match
 * on `code`; people read `message`.
 */
import { installErrorDeclarations } from './install-error-declarations.js'
import { installedDeclaration } from './installed-message.js'
import { constructorsOf, type AnyErrorDeclaration } from './message-declaration.js'

export type InstallErrorCode = keyof typeof installErrorDeclarations
/** Every result an install ends in: INSTALLED or its failure's code. */
export type ResultCode = keyof typeof installedDeclaration | InstallErrorCode

export interface InstallErrorOptions {
  /** The underlying error, for the log only (never shown to the customer). */
  cause?: unknown
}

/** A failure of the install: a stable `code` and the customer-facing `message`. */
export class InstallError extends Error {
  readonly code: InstallErrorCode

  constructor (code: InstallErrorCode, message: string, options: InstallErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'InstallError'
    this.code = code
  }

  toJSON (): { code: InstallErrorCode; message: string } {
    return { code: this.code, message: this.message }
  }
}

/** The HTTP status the service answers a failure with when it is a refusal of the request (the payload's); undefined for any other. */
export function httpStatusOf (code: InstallErrorCode): number | undefined {
  const declaration: AnyErrorDeclaration = installErrorDeclarations[code]
  return declaration.status
}

/** The constructors, one per code, each named and typed by its declaration: `errors.downloadFailed(safeUrl, cause)`… */
export const errors = constructorsOf(installErrorDeclarations, (code, message, cause) => new InstallError(code, message, { cause }))

/** Callers match on `code`, not on `instanceof` (errors may cross module copies or workers). */
export function isInstallError (err: unknown): err is InstallError {
  if (!(err instanceof Error) || err.name !== 'InstallError') return false
  const code: unknown = (err as Error & { code?: unknown }).code
  return typeof code === 'string' && Object.hasOwn(installErrorDeclarations, code)
}

/** A code an install can end with (a result kept in the state file is checked with this). */
export function isResultCode (code: unknown): code is ResultCode {
  return typeof code === 'string' && (Object.hasOwn(installedDeclaration, code) || Object.hasOwn(installErrorDeclarations, code))
}
