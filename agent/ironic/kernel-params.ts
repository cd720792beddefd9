/**
 * The kernel parameters Ironic's PXE and virtual-media boot pass to its ramdisk agent
 * (ironic-python-agent's config.py reads them from /proc/cmdline), as `byoi-agent ironic`'s options:
 * ipa-api-url (the first of a comma-separated list), ipa-advertise-host, ipa-advertise-port,
 * ipa-advertise-protocol, ipa-listen-host, ipa-listen-port, ipa-insecure, ipa-agent-token (set by
 * virtual media, whose config is not sniffable on the network), ipa-lookup-timeout,
 * ipa-lookup-interval. Other ipa-* parameters are ignored. Values are taken as given: the CLI checks
 * them as it checks its options.
 */
export interface IronicKernelParams {
  apiUrl?: string
  advertiseHost?: string
  advertisePort?: string
  advertiseProtocol?: string
  listenHost?: string
  listenPort?: string
  insecure?: boolean
  token?: string
  lookupTimeout?: string
  lookupInterval?: string
}

const NAMES: Record<string, keyof IronicKernelParams> = {
  'ipa-api-url': 'apiUrl',
  'ipa-advertise-host': 'advertiseHost',
  'ipa-advertise-port': 'advertisePort',
  'ipa-advertise-protocol': 'advertiseProtocol',
  'ipa-listen-host': 'listenHost',
  'ipa-listen-port': 'listenPort',
  'ipa-agent-token': 'token',
  'ipa-lookup-timeout': 'lookupTimeout',
  'ipa-lookup-interval': 'lookupInterval',
}

/** /proc/cmdline's words (a value in double quotes may hold spaces, as the kernel allows). */
export function parseKernelParams (cmdline: string): IronicKernelParams {
  const params: IronicKernelParams = {}
  for (const match of cmdline.matchAll(/(?:[^\s"]+|"[^"]*")+/g)) {
    const word = match[0].replaceAll('"', '')
    const equals = word.indexOf('=')
    const name = (equals < 0 ? word : word.slice(0, equals)).toLowerCase()
    const value = equals < 0 ? '' : word.slice(equals + 1)
    if (name === 'ipa-insecure') {
      params.insecure = equals < 0 || ['1', 'true', 'yes', 'on'].includes(value.toLowerCase())
      continue
    }
    const key = NAMES[name]
    if (key === undefined || key === 'insecure') continue
    params[key] = key === 'apiUrl' ? value.split(',')[0] ?? '' : value
  }
  return params
}
