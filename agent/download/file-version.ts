/**
 * Whether an answer is of the version of the file a caller read before (its If-Range validator,
 * its size), and, when it is not, the failure that ends the read as IMAGE_CHANGED: what was read
 * first (a qcow2's tables) and what comes now would be of two different files.
 */
import { AttemptFailure } from './attempt-failure.js'
import { sameValidator, showsValidator, type ResponseHeaders } from './validators.js'

/** Not retried: every attempt would get the other version. */
function changed (reason: string, statusCode: number): AttemptFailure {
  return new AttemptFailure(`the file changed since it was first read: ${reason}`, { retryable: false, statusCode, changed: reason })
}

/**
 * A 200 to a request with If-Range: the server says the file is no longer that version, unless
 * the answer shows the validator itself (a server that ignores Range sends the same file whole).
 */
export function checkWholeAnswer (validator: string, statusCode: number, headers: ResponseHeaders): void {
  if (!showsValidator(validator, headers)) throw changed('the server sent the whole file of another version', statusCode)
}

/**
 * A 206 (or 416) to a request with If-Range: the server matched the validator, so an ETag or
 * Last-Modified of its own that differs is another version; so is a size other than the one read.
 */
export function checkPartialAnswer (expected: { validator?: string | undefined; totalBytes?: number | undefined },
  statusCode: number, headers: ResponseHeaders, totalBytes: number | undefined): void {
  const { validator } = expected
  if (!sameValidator(validator, headers)) {
    throw changed(`the server sent bytes of another version (another ${validator?.startsWith('"') === true ? 'ETag' : 'Last-Modified'})`, statusCode)
  }
  if (expected.totalBytes !== undefined && totalBytes !== undefined && totalBytes !== expected.totalBytes) {
    throw changed(`its size is now ${totalBytes} bytes, not ${expected.totalBytes}`, statusCode)
  }
}
