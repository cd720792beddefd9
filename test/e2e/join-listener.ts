/**
 * The lifecycle case's "cluster": a small HTTP listener on 127.0.0.1 that a freshly installed
 * server joins by POSTing its identity to /join (its host name and machine-id, JSON). The guest
 * reaches it through a QEMU guestfwd; every request is kept for the checks.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface JoinRequest {
  method: string
  path: string
  /** The body as sent (JSON when the guest's script sent what it should). */
  body: string
  at: string
}

export interface JoinListener {
  port: number
  requests: JoinRequest[]
  close: () => Promise<void>
}

const BODY_MAX_BYTES = 64 * 1024 // an identity is a few hundred bytes

export async function startJoinListener (): Promise<JoinListener> {
  const requests: JoinRequest[] = []
  const server: Server = createServer((req, res) => {
    let body = ''
    let tooLarge = false
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => {
      if (body.length + chunk.length > BODY_MAX_BYTES) tooLarge = true
      else body += chunk
    })
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://join-listener').pathname
      requests.push({ method: req.method ?? '', path, body, at: new Date().toISOString() })
      const status = tooLarge ? 413 : req.method === 'POST' && path === '/join' ? 204 : 404
      res.writeHead(status).end()
    })
    req.on('error', () => res.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    port,
    requests,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
