/** What a request's URL must be, shared by the image's download and a capture's upload. */

/** The URL, or why it cannot be requested (not a URL; not http or https). */
export function httpUrl (raw: string): URL | string {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return 'the URL is not valid'
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `${url.protocol} URLs are not supported, only http and https`
  return url
}

/** The `Authorization: Basic` value for credentials written in the URL, or undefined when it has none. */
export function urlCredentials (url: URL): string | undefined {
  if (url.username === '' && url.password === '') return undefined
  return `Basic ${Buffer.from(`${decodeUserInfo(url.username)}:${decodeUserInfo(url.password)}`).toString('base64')}`
}

/** A URL's user or password as typed: percent-decoded when it can be, as it is when not. */
function decodeUserInfo (text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}
