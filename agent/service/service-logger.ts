/**
 * The root logger of `serve`: pino JSON lines, one child per job (`jobId`). The agent never logs
 * a header value or a URL with credentials on purpose (report/redact); pino's `redact` is the
 * second line of defence, for objects that reach the log whole (a request's headers, an error
 * carrying its request options).
 */
import { pino, type DestinationStream, type Logger } from 'pino'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]

/** Paths whose values are replaced by `[REDACTED]` wherever they appear in a log line. */
export const REDACTED_PATHS = [
  'token',
  'authorization',
  'password',
  'headers.authorization',
  'headers.cookie',
  'headers["proxy-authorization"]',
  'headers["x-auth-token"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["proxy-authorization"]',
  'httpHeaders[*].value',
  '*.httpHeaders[*].value',
  'request.httpHeaders',
  'request.imageUrl',
  '*.token',
  '*.authorization',
  '*.password',
  // A capture's S3 credentials (payload/capture-request), wherever a request object reaches the log.
  'accessKeyId',
  'secretAccessKey',
  'sessionToken',
  '*.accessKeyId',
  '*.secretAccessKey',
  '*.sessionToken',
  '*.s3.accessKeyId',
  '*.s3.secretAccessKey',
  '*.s3.sessionToken',
]

export function isLogLevel (value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value)
}

export function createServiceLogger (options: { level: LogLevel; destination: DestinationStream | NodeJS.WritableStream }): Logger {
  return pino({
    level: options.level,
    base: { name: 'byoi-agent' },
    redact: { paths: REDACTED_PATHS, censor: '[REDACTED]' },
  }, options.destination)
}
