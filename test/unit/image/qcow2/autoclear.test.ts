/**
 * Review (issue 11, fuzz seed 6161 qcow2-37 / the autoclear case): a qcow2 whose autoclear_features
 * set data-file-raw (bit 1) without an external data file (incompatible bit 2) is one qemu refuses
 * to open ("data-file-raw requires a data file"); the agent opens and installs it, so the judge's
 * referee cannot say what its guest disk is.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { memoryImageOf } from '../../../helpers/qcow2-fixtures.js'
import { openQcow2 } from '../../../../agent/image/qcow2/index.js'
import { isInstallError } from '../../../../agent/errors/install-error.js'
import { tempDir } from '../../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)

t.test('autoclear data-file-raw without a data file is refused, as qemu refuses it', async (t) => {
  const file = join(tmp.path, 'a.qcow2')
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=1024', file, '4M'])
  const bytes = readFileSync(file)
  bytes.writeBigUInt64BE(1n << 1n, 88) // autoclear_features: QCOW2_AUTOCLEAR_DATA_FILE_RAW only
  const outcome = await openQcow2(memoryImageOf(bytes)).then(() => 'opened', (err: unknown) => err)
  t.ok(isInstallError(outcome), `refused, not ${String(outcome)}`)
  t.match(outcome, { code: /^QCOW2_(UNSUPPORTED|DAMAGED)$/ })
})
