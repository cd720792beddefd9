/**
 * The report URL as the poster uses it: http or https, its credentials (`user:password@`,
 * %-decoded) turned into a Basic `Authorization` header and taken out of the URL. Returns what is
 * wrong with it instead (never quoting the credentials): `serve` checks `--report-url` with this
 * at parse time, so a URL the poster cannot use is a usage error, not a failure at start.
 */
export function parseReportUrl (text: string): { url: URL; authorization: string | undefined } | string {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return 'expected an http or https URL'
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `expected an http or https URL, not ${url.protocol}`
  if (url.username === '' && url.password === '') return { url, authorization: undefined }
  let credentials: string
  try {
    credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`
  } catch {
    return 'its user or password has a malformed %-escape'
  }
  url.username = ''
  url.password = ''
  return { url, authorization: `Basic ${Buffer.from(credentials).toString('base64')}` }
}
