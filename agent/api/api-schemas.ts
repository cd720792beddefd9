/**
 * JSON Schemas of the service's answers. Each is used twice: by fastify to serialize the answer
 * (fast-json-stringify) and in /openapi.json, so the document cannot drift from what is sent.
 * The request bodies' schemas are the payload's own, in schemas/ (payload/parse-install-request).
 */
import { installErrorDeclarations } from '../errors/install-error-declarations.js'
import { installedDeclaration } from '../errors/installed-message.js'
import { ALL_STEP_NAMES } from '../report/progress.js'
import { apiErrorDeclarations } from '../errors/api-error-declarations.js'

export type SchemaObject = Record<string, unknown>

const nullable = (type: string): SchemaObject => ({ type: [type, 'null'] })
const timestamp = (description: string): SchemaObject => ({ type: ['string', 'null'], format: 'date-time', description })

/** Every code an answer or a result holds, in docs/result-messages.md's order: INSTALLED, the install's failures, the service's refusals. */
export const ANSWER_CODES: readonly string[] = [
  ...Object.keys(installedDeclaration),
  ...Object.keys(installErrorDeclarations),
  ...Object.keys(apiErrorDeclarations),
]

export const errorSchema: SchemaObject = {
  title: 'Error',
  description: 'Every refusal and failure: a stable code to match on, a message to show (docs/result-messages.md lists them all).',
  type: 'object',
  required: ['code', 'message'],
  additionalProperties: false,
  properties: {
    code: { type: 'string', enum: [...ANSWER_CODES] },
    message: { type: 'string' },
  },
}

export const resultSchema: SchemaObject = {
  ...errorSchema,
  title: 'Result',
  description: 'The job\'s one result message: INSTALLED or CAPTURED, or the failure.',
}

export const stepSchema: SchemaObject = {
  title: 'Step',
  type: 'object',
  required: ['name', 'status', 'startedAt', 'endedAt'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', enum: [...ALL_STEP_NAMES] },
    status: { type: 'string', enum: ['todo', 'doing', 'done', 'error'] },
    startedAt: timestamp('when the step began'),
    endedAt: timestamp('when the step ended'),
  },
}

export const progressSchema: SchemaObject = {
  title: 'Progress',
  description: 'Bytes of the current data step (download, or write in memory mode); the rate is measured over the last 5 s.',
  type: 'object',
  required: ['step', 'bytes', 'totalBytes', 'bytesPerSecond', 'etaSeconds'],
  additionalProperties: false,
  properties: {
    step: { type: 'string', enum: [...ALL_STEP_NAMES] },
    bytes: { type: 'integer', minimum: 0 },
    totalBytes: { ...nullable('integer'), description: 'null while the size is unknown (no Content-Length)' },
    bytesPerSecond: { type: 'integer', minimum: 0 },
    etaSeconds: { ...nullable('integer'), description: 'null when the size or the rate is unknown' },
  },
}

export const diskSchema: SchemaObject = {
  title: 'Disk',
  type: 'object',
  required: ['path', 'auto', 'sizeBytes', 'model'],
  additionalProperties: false,
  properties: {
    path: { type: 'string', description: 'the target disk' },
    auto: { type: 'boolean', description: 'chosen by --disk auto' },
    sizeBytes: nullable('integer'),
    model: nullable('string'),
  },
}

const stringMap: SchemaObject = { type: 'object', additionalProperties: { type: 'string' } }

export const captureSchema: SchemaObject = {
  title: 'Capture',
  description: 'What a capture made: the image\'s size and digest (over the bytes as uploaded), and the install payload in both ' +
    'of OVH\'s shapes (its imageURL without credentials: put the URL to download from in its place).',
  type: 'object',
  required: ['bytes', 'format', 'digest', 'virtualSizeBytes', 'payloads'],
  additionalProperties: false,
  properties: {
    bytes: { type: 'integer', minimum: 0, description: 'the image file\'s size' },
    format: { type: 'string', description: 'qcow2, raw, zstd-compressed raw' },
    digest: {
      type: 'object',
      required: ['type', 'hex'],
      additionalProperties: false,
      properties: { type: { type: 'string', enum: ['sha256', 'sha512'] }, hex: { type: 'string' } },
    },
    virtualSizeBytes: { type: 'integer', minimum: 0, description: 'the disk\'s size' },
    payloads: {
      type: 'object',
      required: ['installStart', 'reinstall'],
      additionalProperties: false,
      properties: {
        installStart: {
          type: 'object',
          required: ['templateName', 'userMetadata'],
          additionalProperties: false,
          properties: {
            templateName: { type: 'string' },
            userMetadata: {
              type: 'array',
              items: {
                type: 'object', required: ['key', 'value'], additionalProperties: false, properties: { key: { type: 'string' }, value: { type: 'string' } },
              },
            },
          },
        },
        reinstall: {
          type: 'object',
          required: ['operatingSystem', 'customizations'],
          additionalProperties: false,
          properties: { operatingSystem: { type: 'string' }, customizations: stringMap },
        },
      },
    },
  },
}

export const statusSchema: SchemaObject = {
  title: 'Status',
  description: 'The current job (an install or a capture), or the last one (kept across restarts of the agent), or idle.',
  type: 'object',
  required: ['state', 'kind', 'jobId', 'disk', 'startedAt', 'endedAt', 'steps', 'progress', 'result', 'notes', 'capture'],
  additionalProperties: false,
  properties: {
    state: { type: 'string', enum: ['idle', 'running', 'done', 'error'] },
    kind: { type: ['string', 'null'], enum: ['install', 'capture', null], description: 'the job\'s kind; null while idle' },
    jobId: nullable('string'),
    disk: diskSchema,
    startedAt: timestamp('when the job started'),
    endedAt: timestamp('when the job ended'),
    steps: {
      type: 'array',
      items: stepSchema,
      description: 'an install\'s: preflight, download, verify, write, gpt, configdrive, finish; a capture\'s: preflight, scan, upload, finish',
    },
    progress: { anyOf: [progressSchema, { type: 'null' }] },
    result: { anyOf: [resultSchema, { type: 'null' }] },
    notes: {
      type: 'array',
      items: { type: 'string' },
      description: 'the job\'s notes, oldest first (as the `note` events gave them): a switch to streaming, the ConfigDrive mount check\'s outcome',
    },
    capture: { anyOf: [captureSchema, { type: 'null' }], description: 'a capture\'s outcome once it succeeded; null otherwise' },
  },
}

export const jobAcceptedSchema: SchemaObject = {
  title: 'JobAccepted',
  type: 'object',
  required: ['jobId'],
  additionalProperties: false,
  properties: { jobId: { type: 'string' } },
}

export const healthSchema: SchemaObject = {
  title: 'Health',
  type: 'object',
  required: ['status'],
  additionalProperties: false,
  properties: { status: { type: 'string', enum: ['ok'] } },
}
