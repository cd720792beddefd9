/**
 * The payload's JSON Schemas, read from the repository's `schemas/` folder: the API embeds them in
 * /openapi.json, and scripts/schema-validators.ts compiles them into the validators the parser
 * uses (so an install reads no schema file).
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export type JsonSchema = Readonly<Record<string, unknown>>

/**
 * The repository's `schemas/` folder. This module runs from `agent/payload/` (tests) and from
 * `dist/agent/payload/` (after tsc), so walk up until the folder is found.
 */
export function schemasDir (): string {
  const here = dirname(fileURLToPath(import.meta.url))
  for (let dir = here; ; dir = dirname(dir)) {
    const candidate = join(dir, 'schemas')
    if (existsSync(join(candidate, 'install-start.json'))) return candidate
    if (dirname(dir) === dir) throw new Error(`No schemas/install-start.json in ${here} or above`)
  }
}

function loadSchema (fileName: string): JsonSchema {
  const schema: unknown = JSON.parse(readFileSync(join(schemasDir(), fileName), 'utf8'))
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new Error(`schemas/${fileName} is not a JSON object`)
  return schema as JsonSchema
}

/** Body of `POST /dedicated/server/{serviceName}/install/start`. */
export const installStartSchema = loadSchema('install-start.json')
/** Body of `POST /dedicated/server/{serviceName}/reinstall`. */
export const reinstallSchema = loadSchema('reinstall.json')
/** Body of the agent's own `POST /capture/start`. */
export const captureStartSchema = loadSchema('capture-start.json')
