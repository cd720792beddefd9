/** How the scripted server answers: the hostile HTTP behaviours of family `http` (the other families get `ok`). */
export type Behaviour =
  | { kind: 'ok'; chunked: boolean }
  /** The first `cutAttempts` answers announce the whole body and close `missingBytes` early. */
  | { kind: 'short-body'; missingBytes: number; cutAttempts: number; ranges: boolean }
  /** `extraBytes` more than the Content-Length, on a kept-alive connection, with `Connection: close`, or as HTTP/1.0. */
  | { kind: 'long-body'; extraBytes: number; framing: 'keep-alive' | 'close' | 'http1.0' }
  /** The body gzipped, with `Content-Encoding: gzip` (never asked for). */
  | { kind: 'gzip' }
  | { kind: 'content-length'; variant: ContentLengthVariant }
  /** Headers (or not) and `afterBytes`, then silence, the socket left open, on the first `attempts` answers. */
  | { kind: 'stall'; afterBytes: number; attempts: number; beforeHeaders: boolean }
  /** One byte every `intervalMs`, for as long as the client listens. */
  | { kind: 'trickle'; intervalMs: number }
  | { kind: 'redirect-loop'; pair: boolean }
  | { kind: 'redirect-chain'; hops: number }
  /** `count` 5xx answers before the file. */
  | { kind: 'storm'; count: number; statuses: number[]; retryAfter: boolean }
  /** A TCP reset after `afterBytes` of the body on the first `attempts` answers. */
  | { kind: 'reset'; afterBytes: number; attempts: number; ranges: boolean }
  /** The first answer cut after `afterBytes`; the Range request that follows answered wrong. */
  | { kind: 'wrong-range'; afterBytes: number; answer: WrongRange }

export type ContentLengthVariant =
  'huge' | 'over-safe' | 'over-disk' | 'malformed' | 'negative' | 'duplicate-same' | 'duplicate-different' | 'too-small' | 'list'
export type WrongRange = 'full-200' | 'wrong-start' | 'wrong-total' | 'no-content-range' | '416' | 'past-end'

/** A short text for the report: the kind and its parameters. */
export function describeBehaviour (b: Behaviour): string {
  const { kind, ...rest } = b
  const params = Object.entries(rest).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('/') : String(v)}`)
  return params.length === 0 ? kind : `${kind}(${params.join(',')})`
}
