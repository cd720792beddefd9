/**
 * /openapi.json: an OpenAPI 3.1 document made from the payload schemas in schemas/ (the request
 * body of POST /install/start is one of them) and the answers' schemas (api/api-schemas).
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { captureStartSchema, installStartSchema, reinstallSchema, type JsonSchema } from '../payload/schemas.js'
import { errorSchema, healthSchema, jobAcceptedSchema, statusSchema, type SchemaObject } from './api-schemas.js'

export interface OpenApiOptions {
  version: string
  bodyLimitBytes: number
}

export type OpenApiDocument = Record<string, unknown>

const ref = (name: string): SchemaObject => ({ $ref: `#/components/schemas/${name}` })
const json = (schemaName: string, description: string): SchemaObject => ({ description, content: { 'application/json': { schema: ref(schemaName) } } })
const refusal = (description: string): SchemaObject => json('Error', description)

/** The answers every authenticated route can give. */
const authRefusals = { 401: refusal('UNAUTHORIZED: no bearer token, or not the right one') }

export function buildOpenApiDocument (options: OpenApiOptions): OpenApiDocument {
  const schemas: Record<string, JsonSchema | SchemaObject> = {
    InstallStart: installStartSchema,
    Reinstall: reinstallSchema,
    CaptureStart: captureStartSchema,
    Error: errorSchema,
    Status: statusSchema,
    JobAccepted: jobAcceptedSchema,
    Health: healthSchema,
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'byoi-agent',
      version: options.version,
      description: 'Installs a customer\'s own disk image on this server\'s disk, or captures the disk as an image, one job at a ' +
        'time. docs/api.md tells the routes, ' +
        'the status object, the event stream and the report URL\'s messages; docs/result-messages.md every code.',
    },
    security: [{ bearer: [] }],
    paths: {
      '/install/start': {
        post: {
          summary: 'Start an install',
          description: 'The OVH payload, in either shape: install/start (with userMetadata) or reinstall (with customizations). ' +
            `At most ${options.bodyLimitBytes} bytes.`,
          operationId: 'startInstall',
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { oneOf: [ref('InstallStart'), ref('Reinstall')] } } },
          },
          responses: {
            202: json('JobAccepted', 'the job started; follow it with /install/status or /install/events'),
            400: refusal('the payload is refused (PAYLOAD_MISSING_FIELD, PAYLOAD_BAD_FIELD, BAD_IMAGE_FORMAT, BAD_CHECKSUM_TYPE, ' +
              'naming the field), or the body is not JSON'),
            ...authRefusals,
            409: refusal('BUSY: a job (install or capture) is already running'),
            413: refusal('BODY_TOO_LARGE'),
            415: refusal('UNSUPPORTED_MEDIA_TYPE: the body must be application/json'),
            503: refusal('SHUTTING_DOWN'),
          },
        },
      },
      '/capture/start': {
        post: {
          summary: 'Start a capture of the disk',
          description: 'The service\'s disk, opened read only (refused while in use), uploaded as a qcow2 or raw image with one HTTP ' +
            'PUT. A job as an install is: its status at /install/status (kind `capture`; `capture` holds the size, the digest and ' +
            'the install payloads once it succeeded), its events at /install/events.',
          operationId: 'startCapture',
          requestBody: { required: true, content: { 'application/json': { schema: ref('CaptureStart') } } },
          responses: {
            202: json('JobAccepted', 'the capture started; follow it with /install/status or /install/events'),
            400: refusal('the body is refused (PAYLOAD_MISSING_FIELD, PAYLOAD_BAD_FIELD, naming the field), or it is not JSON'),
            ...authRefusals,
            409: refusal('BUSY: a job (install or capture) is already running'),
            413: refusal('BODY_TOO_LARGE'),
            415: refusal('UNSUPPORTED_MEDIA_TYPE: the body must be application/json'),
            503: refusal('SHUTTING_DOWN'),
          },
        },
      },
      '/capture/cancel': {
        post: {
          summary: 'Cancel the running capture',
          description: 'Aborts the capture (its upload under way is abandoned, never completed); its result, CAPTURE_CANCELLED, ' +
            'arrives in the status and the events.',
          operationId: 'cancelCapture',
          responses: {
            202: json('JobAccepted', 'the capture is being cancelled'),
            ...authRefusals,
            409: refusal('NOT_RUNNING: no capture is running'),
          },
        },
      },
      '/install/status': {
        get: {
          summary: 'The current or last job',
          operationId: 'installStatus',
          responses: { 200: json('Status', 'the status'), ...authRefusals },
        },
      },
      '/install/events': {
        get: {
          summary: 'The status, live, as Server-Sent Events',
          description: 'First a `retry` field (2000 ms) and a `status` event (the whole status), then `step`, `progress` and `note` ' +
            'events as they happen, a `status` event when a job starts, and a `result` event, after which the stream ends. ' +
            'Every event has an id `JOB:RUN:SEQ`, unique and increasing for the agent\'s lifetime. ' +
            'A comment line is sent every 15 s to keep the connection open.',
          operationId: 'installEvents',
          parameters: [{
            name: 'Last-Event-ID',
            in: 'header',
            required: false,
            schema: { type: 'string' },
            description: 'Sent by EventSource when it reconnects. The id of an event sent after the current job ended (its `result`) ' +
              'gets 204; any other value, or none, gets a fresh stream.',
          }],
          responses: {
            200: { description: 'an event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
            204: { description: 'the client saw the current job\'s result (Last-Event-ID): nothing more to tell, EventSource stops reconnecting' },
            ...authRefusals,
          },
        },
      },
      '/install/cancel': {
        post: {
          summary: 'Cancel the running install',
          description: 'Aborts the job; its result (CANCELLED_UNTOUCHED before any write, CANCELLED after, the disk left unbootable) ' +
            'arrives in the status and the events.',
          operationId: 'cancelInstall',
          responses: {
            202: json('JobAccepted', 'the job is being cancelled'),
            ...authRefusals,
            409: refusal('NOT_RUNNING: no install is running'),
          },
        },
      },
      '/health': {
        get: {
          summary: 'Liveness (no authentication)',
          operationId: 'health',
          security: [],
          responses: { 200: json('Health', 'the agent answers') },
        },
      },
      '/openapi.json': {
        get: {
          summary: 'This document',
          operationId: 'openapi',
          responses: { 200: { description: 'an OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } }, ...authRefusals },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'The token of --token-file.' } },
      schemas,
    },
  }
}

/** The agent's version, from its package.json (this module runs from agent/api/ or dist/agent/api/). */
export function agentVersion (): string {
  const here = dirname(fileURLToPath(import.meta.url))
  for (let dir = here; dirname(dir) !== dir; dir = dirname(dir)) {
    const file = join(dir, 'package.json')
    if (!existsSync(file)) continue
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown }
    if (pkg.name === 'byoi-agent' && typeof pkg.version === 'string') return pkg.version
  }
  return '0.0.0'
}
