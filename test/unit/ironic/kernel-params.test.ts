import t from 'tap'
import { parseKernelParams } from '../../../agent/ironic/kernel-params.js'

t.test('the ipa-* parameters Ironic\'s boot passes', async (t) => {
  const params = parseKernelParams('BOOT_IMAGE=/vmlinuz console=ttyS0 ipa-api-url=http://10.0.0.1:6385,http://10.0.0.2:6385 ' +
    'ipa-advertise-host=10.0.0.9 ipa-advertise-port=9999 ipa-insecure=1 ipa-agent-token=' + 'x'.repeat(43) +
    ' ipa-lookup-timeout=60 ipa-global-request-id=req-1 "ipa-listen-host=::" BOOTIF=01-52-54-00-12-34-56\n')
  t.same(params, {
    apiUrl: 'http://10.0.0.1:6385',
    advertiseHost: '10.0.0.9',
    advertisePort: '9999',
    insecure: true,
    token: 'x'.repeat(43),
    lookupTimeout: '60',
    listenHost: '::',
  })
  t.same(parseKernelParams('ipa-insecure=0 quiet'), { insecure: false })
  t.same(parseKernelParams('ipa-insecure'), { insecure: true })
  t.same(parseKernelParams('root=/dev/sda1 quiet'), {})
})
