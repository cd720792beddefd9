/**
 * The agent API the Ironic conductor calls back (ironic-python-agent's api/app.py), on fastify:
 *
 *   GET  /                       the API's name and versions
 *   GET  /v1/                    links
 *   GET  /v1/status              started_at, version
 *   POST /v1/commands/           run `ext.command` ({name, params}); ?wait=true answers once done;
 *                                the agent token (?agent_token=) is required
 *   GET  /v1/commands/           every command's result, in order
 *   GET  /v1/commands/{id}       one result (?wait=true: once done)
 *
 * and the same paths without /v1, as ironic-python-agent routes them. Reading the results takes
 * the token when one is given (ironic-python-agent now requires it there too; conductors of
 * Debian's version send none): they carry no command parameters, so nothing secret. Errors answer
 * ironic-python-agent's fault body, `{ faultcode, faultstring }` (the conductor fails reading one
 * without `faultstring`).
 */
import { timingSafeEqual } from 'node:crypto'
import { fastify, LogController, type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify'
import type { Logger } from 'pino'
import { AgentRequestError, type CommandLog } from './command-log.js'
import type { AgentCommands } from './agent-commands.js'
import { isRecord } from './image-info.js'

/** A config drive of 64 MiB, gzip'd and base64'd, sent twice (in args and in image_info) with the rest of the node. */
const BODY_LIMIT_BYTES = 256 * 1024 * 1024

export interface AgentServerDeps {
  commands: AgentCommands
  log: CommandLog
  /** The agent token once known (from the lookup or the kernel command line). */
  token: () => string | undefined
  version: string
  startedAt: number
  logger: Logger
}

export function buildAgentServer (deps: AgentServerDeps): FastifyInstance {
  const options: FastifyServerOptions = {
    loggerInstance: deps.logger.child({ component: 'agent-api' }),
    bodyLimit: BODY_LIMIT_BYTES,
    logController: new LogController({ disableRequestLogging: true }),
  }
  const app = fastify(options)
  app.removeAllContentTypeParsers()
  // ironic-python-agent reads the body as JSON whatever its content type (get_json(force=True)).
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: BODY_LIMIT_BYTES }, (_request, body, done) => {
    try {
      const text = typeof body === 'string' ? body : body.toString('utf8')
      done(null, text.trim() === '' ? undefined : JSON.parse(text) as unknown)
    } catch {
      done(new AgentRequestError(400, 'Invalid request body: the body is not JSON'), undefined)
    }
  })
  app.setErrorHandler((err, _request, reply) => {
    if (err instanceof AgentRequestError) return fault(reply, err.statusCode, err.message)
    const status = typeof (err as { statusCode?: unknown }).statusCode === 'number' ? (err as { statusCode: number }).statusCode : 500
    if (status >= 500) deps.logger.error({ err }, 'agent API error')
    return fault(reply, status, status >= 500 ? 'Internal server error' : (err as Error).message)
  })
  app.setNotFoundHandler((_request, reply) => fault(reply, 404, 'Not found: The requested URL was not found.'))

  const checkToken = (given: unknown, required: boolean): void => {
    const expected = deps.token()
    if (given === undefined && !required) return
    if (typeof given !== 'string' || expected === undefined || !sameSecret(given, expected)) throw new AgentRequestError(401, 'Token invalid.')
  }

  app.get('/', async (request) => {
    const root = rootUrl(request.protocol, request.host)
    return {
      name: 'byoi-agent (OpenStack Ironic Python Agent API)',
      description: 'byoi-agent speaking the ironic-python-agent API',
      versions: [version(root)],
      default_version: version(root),
    }
  })
  for (const prefix of ['/v1', '']) {
    if (prefix === '/v1') {
      app.get('/v1/', async (request) => {
        const root = rootUrl(request.protocol, request.host)
        return {
          ...version(root),
          commands: [{ href: `${root}/v1/commands`, rel: 'self' }, { href: `${root}/commands`, rel: 'bookmark' }],
          status: [{ href: `${root}/v1/status`, rel: 'self' }, { href: `${root}/status`, rel: 'bookmark' }],
          media_types: [{ base: 'application/json', type: 'application/vnd.openstack.ironic-python-agent.v1+json' }],
        }
      })
    }
    app.get(`${prefix}/status`, async () => ({ started_at: deps.startedAt / 1000, version: deps.version }))
    app.get(`${prefix}/commands/`, async (request) => {
      checkToken((request.query as Record<string, unknown>).agent_token, false)
      return { commands: deps.log.list() }
    })
    app.get(`${prefix}/commands/:id`, async (request) => {
      const query = request.query as Record<string, unknown>
      checkToken(query.agent_token, false)
      const { id } = request.params as { id: string }
      const result = isTrue(query.wait) ? await deps.log.wait(id) : deps.log.get(id)
      if (result === undefined) throw new AgentRequestError(404, `Not found: Command with id ${id} not found.`)
      return result
    })
    app.post(`${prefix}/commands/`, async (request, reply) => {
      const query = request.query as Record<string, unknown>
      checkToken(query.agent_token, true)
      const body = request.body
      if (!isRecord(body) || typeof body.name !== 'string' || !isRecord(body.params)) {
        throw new AgentRequestError(400, 'Bad request: Missing or invalid name or params')
      }
      deps.logger.info({ command: body.name, wait: isTrue(query.wait) }, 'command received')
      const result = await deps.commands.execute(body.name, body.params, isTrue(query.wait))
      return await reply.code(200).send(result)
    })
  }
  return app
}

async function fault (reply: FastifyReply, status: number, message: string): Promise<FastifyReply> {
  return await reply.code(status).type('application/json').send({ faultcode: status >= 500 ? 'Server' : 'Client', faultstring: message })
}

function rootUrl (protocol: string, host: string): string {
  return `${protocol}://${host}`
}

function version (root: string): Record<string, unknown> {
  return {
    id: 'v1',
    links: [
      { href: `${root}/v1/`, rel: 'self' },
      { href: 'https://docs.openstack.org/ironic-python-agent', rel: 'describedby', type: 'text/html' },
    ],
  }
}

function isTrue (value: unknown): boolean {
  return typeof value === 'string' && value.toLowerCase() === 'true'
}

function sameSecret (given: string, expected: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}
