import t from 'tap'
import { safeUrl } from '../../../agent/report/redact.js'

t.test('safeUrl strips credentials and signatures', async (t) => {
  t.equal(safeUrl('https://user:pass@example.invalid/a.raw'), 'https://example.invalid/a.raw')
  t.equal(safeUrl('https://h.invalid/a.raw?X-Amz-Signature=abc&X-Amz-Credential=def&part=1'),
    'https://h.invalid/a.raw?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&part=1')
  t.equal(safeUrl('https://h.invalid/a.raw?temp_url_sig=abc&temp_url_expires=1'), 'https://h.invalid/a.raw?temp_url_sig=REDACTED&temp_url_expires=1')
  t.equal(safeUrl('not a url'), '(invalid URL)')
})
