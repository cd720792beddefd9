/**
 * undici's Agent with its request API and its connector (`buildConnector`), and nothing else of
 * the package. undici's index also loads
 * fetch, WebSocket, EventSource, the cache and mock layers, none of which the download uses: about
 * 9 MiB of a rescue system's RAM (measured with Node 20: `require('undici')` peaks at 60 MiB RSS,
 * the agent and the API alone at 51 MiB). The index adds the API to every dispatcher with
 * `Object.assign(Dispatcher.prototype, api)`; so does this module (the same functions, so it
 * does not matter which runs first). Typed from undici's own declarations.
 */
import AgentImpl from 'undici/lib/dispatcher/agent.js'
import DispatcherImpl from 'undici/lib/dispatcher/dispatcher.js'
import api from 'undici/lib/api/index.js'
import buildConnectorImpl from 'undici/lib/core/connect.js'

Object.assign(DispatcherImpl.prototype, api)

export const Agent = AgentImpl
export type Agent = InstanceType<typeof AgentImpl>
/** undici's public `buildConnector` (the default TCP/TLS connector), loaded from its own module. */
export const buildConnector = buildConnectorImpl
