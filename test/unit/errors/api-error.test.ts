import t from 'tap'
import { apiErrorDeclarations } from '../../../agent/errors/api-error-declarations.js'
import { ApiError, apiErrors, isApiError, type ApiErrorCode } from '../../../agent/errors/api-error.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { checkDeclaredConstructors, type ConstructorSamples } from '../../helpers/declared-constructors.js'

const cause = new Error('the underlying error')

/** Every constructor, with arguments (and a cause where the declaration takes one). */
const samples: ConstructorSamples<typeof apiErrors> = {
  busy: ['capture', 'job-1'],
  notRunning: ['install'],
  shuttingDown: [],
  unauthorized: [],
  notFound: [],
  unsupportedMediaType: [],
  bodyTooLarge: [1024],
  badRequest: ['the URL is malformed', cause],
  serviceError: [cause],
}

t.test('every constructor is made from its declaration: its code, its message, its cause, its HTTP status', async (t) => {
  checkDeclaredConstructors(t, {
    declarations: apiErrorDeclarations,
    constructors: apiErrors,
    samples,
    check: (t, made, code) => {
      t.ok(made instanceof ApiError && isApiError(made), 'an ApiError')
      t.notOk(isInstallError(made), 'not an install failure')
      t.equal((made as ApiError).status, apiErrorDeclarations[code as ApiErrorCode].status, 'the declared HTTP status')
    },
  })
})

t.test('the statuses the service answers with', async (t) => {
  t.same(Object.fromEntries(Object.entries(apiErrorDeclarations).map(([code, d]) => [code, d.status])), {
    BUSY: 409,
    NOT_RUNNING: 409,
    SHUTTING_DOWN: 503,
    UNAUTHORIZED: 401,
    NOT_FOUND: 404,
    UNSUPPORTED_MEDIA_TYPE: 415,
    BODY_TOO_LARGE: 413,
    BAD_REQUEST: 400,
    SERVICE_ERROR: 500,
  })
  t.same(apiErrors.busy('install', 'job-1').toJSON(), { code: 'BUSY', message: 'An install is already running, job job-1.' })
  t.same(apiErrors.busy('capture', 'job-2').toJSON(), { code: 'BUSY', message: 'A capture is already running, job job-2.' })
  t.same(apiErrors.notRunning('capture').toJSON(), { code: 'NOT_RUNNING', message: 'No capture is running.' })
  t.notOk(isApiError(new Error('x')))
})
