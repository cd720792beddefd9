/**
 * Secrets never reach a log, a status or a result message. These helpers make the safe forms.
 */

/** Query parameter names that carry credentials in presigned or temporary URLs (S3, GCS, Swift, Azure SAS…). */
const SECRET_QUERY_KEY = /sig|signature|token|secret|credential|password|passwd|auth|key|sas|^se$|^sp$|^sv$/i

/**
 * The URL as it may be shown: user info removed, secret-looking query values replaced by
 * `REDACTED`. An unparsable URL is not echoed at all.
 */
export function safeUrl (raw: string): string {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return '(invalid URL)'
  }
  url.username = ''
  url.password = ''
  const params = [...url.searchParams.keys()]
  for (const key of new Set(params)) {
    if (SECRET_QUERY_KEY.test(key)) url.searchParams.set(key, 'REDACTED')
  }
  return url.toString()
}

/** Header names with their values hidden, for logs. */
export function redactHeaders (headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of Object.keys(headers)) out[name] = '[REDACTED]'
  return out
}
