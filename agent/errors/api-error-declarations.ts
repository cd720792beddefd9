/**
 * The HTTP service's own refusals (`serve`, docs/api.md), declared once as the install's failures
 * are (message-declaration.ts): code, HTTP status, when, and the one function that writes the
 * message. Nothing was installed or changed when one is given. `apiErrors.*` (api-error.ts) and
 * the service's section of docs/result-messages.md are made from these. They live here, below
 * service/ and api/, because the job runner (service/) throws BUSY, NOT_RUNNING and SHUTTING_DOWN.
 */
import { declareErrors, shown, type Shown } from './message-declaration.js'

/** The service's two kinds of job (report/progress's JobKind; errors/ imports nothing above it). */
type JobKind = 'install' | 'capture'

export const apiErrorDeclarations = declareErrors({
  BUSY: {
    constructorName: 'busy',
    ovh: false,
    status: 409,
    message: (kind: Shown<JobKind>, jobId: Shown<string>) =>
      `${shown(kind, (k) => k === 'capture' ? 'A capture' : 'An install')} is already running, job ${jobId}.`,
    placeholders: ['A_JOB', 'JOB'],
    when: '`POST /install/start` or `POST /capture/start` (HTTP 409) while a job runs (one at a time, either kind); A_JOB is ' +
      '`An install` or `A capture`, JOB its id',
  },
  NOT_RUNNING: {
    constructorName: 'notRunning',
    ovh: false,
    status: 409,
    message: (kind: Shown<JobKind>) => `No ${shown(kind, (k) => k)} is running.`,
    placeholders: ['KIND'],
    when: '`POST /install/cancel` or `POST /capture/cancel` (HTTP 409) when no job of that KIND (`install`, `capture`) runs',
  },
  SHUTTING_DOWN: {
    constructorName: 'shuttingDown',
    ovh: false,
    status: 503,
    message: () => 'The agent is shutting down, no install can start.',
    placeholders: [],
    when: '`POST /install/start` (HTTP 503) after SIGTERM or SIGINT',
  },
  UNAUTHORIZED: {
    constructorName: 'unauthorized',
    ovh: false,
    status: 401,
    message: () => 'Missing or wrong bearer token.',
    placeholders: [],
    when: 'any route but `/health` (HTTP 401) without `Authorization: Bearer TOKEN` holding the token of --token-file',
  },
  NOT_FOUND: {
    constructorName: 'notFound',
    ovh: false,
    status: 404,
    message: () => 'No such route, the routes are listed in /openapi.json.',
    placeholders: [],
    when: 'an unknown path or method (HTTP 404)',
  },
  UNSUPPORTED_MEDIA_TYPE: {
    constructorName: 'unsupportedMediaType',
    ovh: false,
    status: 415,
    message: () => 'Bad Content-Type, expected: application/json.',
    placeholders: [],
    when: 'a request body of another type (HTTP 415)',
  },
  BODY_TOO_LARGE: {
    constructorName: 'bodyTooLarge',
    ovh: false,
    status: 413,
    message: (limitBytes: Shown<number>) => `Request body too large, expected: at most ${limitBytes} bytes.`,
    placeholders: ['N'],
    when: 'a request body over the limit (HTTP 413); the limit leaves room for 16 MiB of configDriveUserData',
  },
  BAD_REQUEST: {
    constructorName: 'badRequest',
    ovh: false,
    // The usual status; node:http's refusals say more when they can (408 a request too slow, 431 headers too large).
    status: 400,
    withCause: true,
    message: (reason: Shown<string>) => `Bad request: ${reason}.`,
    placeholders: ['REASON'],
    when: 'a request that is not readable HTTP (HTTP 400): a bad Content-Length, a malformed URL or header',
  },
  SERVICE_ERROR: {
    constructorName: 'serviceError',
    ovh: false,
    status: 500,
    withCause: true,
    message: () => 'The agent failed on an internal error, details are in its log.',
    placeholders: [],
    when: 'an unexpected error in the HTTP service (HTTP 500); a bug, never an answer to bad input',
  },
})
