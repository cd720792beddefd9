/**
 * An HTTP proxy on 127.0.0.1 that lets a host process reach a guest-side address of the QEMU user
 * network the way the guest does: each `guestfwd` address (e.g. 10.0.2.101:80) is mapped to the
 * forward's host end on 127.0.0.1, as QEMU maps it for the guest. Given to a host process as its
 * `http_proxy` (Python's requests honours it), so that one URL, the guest's, works on both sides.
 *
 * It only ever connects to 127.0.0.1: a request for an address that is not mapped is answered 403
 * and never leaves this process (nothing is sent to 10.0.2.x from the host). Plain http only (no
 * CONNECT). Every request is kept for the checks.
 */
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ProxiedRequest {
  method: string
  /** The absolute URL the client asked for. */
  url: string
  status: number
  at: string
}

export interface GuestAddressProxy {
  /** http://127.0.0.1:PORT, the value for `http_proxy`. */
  url: string
  requests: ProxiedRequest[]
  close: () => Promise<void>
}

/** `map`: `host:port` as the URL names it (port 80 written out) → the port on 127.0.0.1 that serves it. */
export async function startGuestAddressProxy (map: Record<string, number>): Promise<GuestAddressProxy> {
  const requests: ProxiedRequest[] = []
  const server: Server = createServer((req, res) => {
    const entry: ProxiedRequest = { method: req.method ?? '', url: req.url ?? '', status: 0, at: new Date().toISOString() }
    requests.push(entry)
    const refuse = (status: number, text: string): void => {
      entry.status = status
      res.writeHead(status, { 'content-type': 'text/plain' }).end(`${text}\n`)
    }
    let target: URL
    try {
      target = new URL(req.url ?? '')
    } catch {
      refuse(400, 'an absolute http:// URL is expected (this is a proxy)')
      return
    }
    const hostPort = `${target.hostname}:${target.port === '' ? '80' : target.port}`
    const port = target.protocol === 'http:' ? map[hostPort] : undefined
    if (port === undefined) {
      refuse(403, `${hostPort} is not a mapped guest address`)
      return
    }
    const headers = { ...req.headers }
    delete headers['proxy-connection']
    delete headers['proxy-authorization']
    const upstream = httpRequest({ host: '127.0.0.1', port, method: req.method, path: `${target.pathname}${target.search}`, headers }, (answer) => {
      entry.status = answer.statusCode ?? 0
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', (err) => {
      if (!res.headersSent) refuse(502, err.message)
      else res.destroy()
    })
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
