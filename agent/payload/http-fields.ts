/**
 * The HTTP fields a payload carries, checked the same way in an install's and a capture's: a URL
 * (http or https only) and headers. Refusals blame the field and never quote the value (URLs hold
 * credentials or signed queries, header values are secrets).
 */
import { errors } from '../errors/install-error.js'

/** A header as given, with the field names to blame for its name and its value. */
export interface GivenHeader { name: string; value: string; nameField: string; valueField: string }

/** An http(s) URL, normalized (`URL.href`). */
export function checkHttpUrl (raw: string, field: string): string {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw errors.payloadBadField(field, 'an http or https URL')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw errors.payloadBadField(field, 'an http or https URL')
  return url.href
}

/** RFC 9110 §5.6.2 token. */
export const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** RFC 9110 §5.5 field-value: HTAB, visible ASCII, obs-text; what undici accepts. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
/** Framing, hop-by-hop and range headers: a download or an upload only works if the agent alone sets them. */
const AGENT_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection',
  'te', 'trailer', 'upgrade', 'expect', 'range', 'if-range',
  'accept-encoding', // a compressed body would be written to disk as is
])

export function checkHttpHeaders (headers: GivenHeader[]): Array<{ name: string; value: string }> {
  const seen = new Set<string>()
  return headers.map(({ name, value, nameField, valueField }) => {
    if (!HEADER_NAME.test(name)) throw errors.payloadBadField(nameField, 'an HTTP header name')
    const lowerName = name.toLowerCase()
    if (AGENT_HEADERS.has(lowerName)) throw errors.payloadBadField(nameField, 'a header the agent does not set itself')
    if (seen.has(lowerName)) throw errors.payloadBadField(nameField, 'a header name given once')
    seen.add(lowerName)
    // Values are secrets (Authorization…): blame the field, never quote the value.
    if (!HEADER_VALUE.test(value)) {
      throw errors.payloadBadField(valueField, 'a header value of Latin-1 text without line breaks or control characters')
    }
    return { name, value }
  })
}

