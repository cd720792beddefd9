// undici ships declarations for its index only; these are the four internal modules
// undici-agent.ts loads instead, typed as the index exports them.
declare module 'undici/lib/dispatcher/agent.js' {
  import type { Agent } from 'undici'
  const AgentImpl: typeof Agent
  export default AgentImpl
}
declare module 'undici/lib/dispatcher/dispatcher.js' {
  import type { Dispatcher } from 'undici'
  const DispatcherImpl: typeof Dispatcher
  export default DispatcherImpl
}
declare module 'undici/lib/api/index.js' {
  const api: Record<string, unknown>
  export default api
}
declare module 'undici/lib/core/connect.js' {
  import type { buildConnector } from 'undici'
  const buildConnectorImpl: typeof buildConnector
  export default buildConnectorImpl
}
