/**
 * A payload's JSON text as both entry points read it, `byoi-agent install --payload` and
 * `POST /install/start`: one leading UTF-8 byte order mark is ignored (Windows editors write one;
 * JSON.parse alone refuses it), and a `__proto__` key, or a `constructor` object with a
 * `prototype` key, is refused anywhere in the document (as secure-json-parse, fastify's parser,
 * does), so no later merge of the body can reach an object's prototype.
 */
import { errors } from '../errors/install-error.js'

const BOM = '\ufeff'

class PrototypeKey extends Error {}

/** The parsed document; throws InstallError PAYLOAD_BAD_FIELD naming `name` (`payload`, `request body`). */
export function parsePayloadJson (text: string, name: string): unknown {
  const json = text.startsWith(BOM) ? text.slice(BOM.length) : text
  try {
    // The reviver sees every key once decoded, so `"\u005f_proto__"` is caught as well.
    return JSON.parse(json, (key, value: unknown) => {
      if (key === '__proto__') throw new PrototypeKey()
      if (key === 'constructor' && typeof value === 'object' && value !== null && Object.hasOwn(value, 'prototype')) throw new PrototypeKey()
      return value
    })
  } catch (err) {
    if (err instanceof PrototypeKey) throw errors.payloadBadField(name, 'a JSON document without __proto__ or constructor.prototype keys')
    throw errors.payloadBadField(name, 'a JSON document')
  }
}
