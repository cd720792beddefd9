/**
 * What the agent tells Ironic about the machine it runs on: the MAC addresses of its network
 * interfaces (the lookup's `addresses`: Ironic finds the node by a port with one of them) and the
 * address the conductor can call back (the source address of the route to the API's host, as
 * ironic-python-agent's `ip route get` finds it, here by a connected UDP socket: no packet sent).
 */
import { createSocket } from 'node:dgram'
import { lookup } from 'node:dns/promises'
import { readdir, readFile, realpath } from 'node:fs/promises'
import { join } from 'node:path'

/** /sys/class/net: each interface backed by hardware (not lo, bridges, veths…) with a MAC, in name order. */
export async function listMacAddresses (sysClassNet = '/sys/class/net'): Promise<string[]> {
  const names = (await readdir(sysClassNet).catch(() => [])).sort()
  const macs: string[] = []
  for (const name of names) {
    const dir = join(sysClassNet, name)
    const resolved = await realpath(dir).catch(() => dir)
    if (resolved.includes('/devices/virtual/')) continue
    const mac = (await readFile(join(dir, 'address'), 'utf8').catch(() => '')).trim().toLowerCase()
    if (/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac) && mac !== '00:00:00:00:00:00') macs.push(mac)
  }
  return [...new Set(macs)]
}

/** The local address a packet to `apiUrl`'s host would leave from. */
export async function routeSourceAddress (apiUrl: string): Promise<string> {
  const url = new URL(apiUrl)
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const { address, family } = await lookup(host)
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  const socket = createSocket(family === 6 ? 'udp6' : 'udp4')
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.connect(port, address, () => { resolve() })
    })
    return socket.address().address
  } finally {
    socket.close()
  }
}

/** `http://HOST:PORT` with an IPv6 host in brackets. */
export function callbackUrlOf (protocol: 'http' | 'https', host: string, port: number): string {
  return `${protocol}://${host.includes(':') ? `[${host}]` : host}:${port}`
}
