import t from 'tap'
import { readFileSync } from 'node:fs'
import { errors, installedMessage, isInstallError, resultMessages } from '../../../agent/report/install-error.js'
import { resultMessagesTable } from '../../../agent/report/messages-table.js'
import { safeUrl } from '../../../agent/report/redact.js'

t.test('docs/result-messages.md holds the table the code makes', async (t) => {
  const doc = readFileSync(new URL('../../../docs/result-messages.md', import.meta.url), 'utf8')
  const begin = doc.indexOf('<!-- messages:begin -->')
  const end = doc.indexOf('<!-- messages:end -->')
  t.ok(begin >= 0 && end > begin, 'markers present')
  t.equal(doc.slice(begin + '<!-- messages:begin -->'.length, end).trim(), resultMessagesTable(),
    'the table is current (regenerate it with: make docs-messages)')
})

t.test('OVH messages are word for word', async (t) => {
  t.equal(errors.qcow2WriteFailed().message, "Can't write qcow2 on disk.")
  t.equal(errors.qcow2TooBig().message, 'Could not download, qcow2 image is too big to download in memory.')
  t.equal(errors.downloadFailed('http://path/of/your/image').message, 'Could not download image located: `http://path/of/your/image`.')
  t.equal(errors.badImageFormat().message, 'Bad format image, expected: qcow2, raw.')
  t.equal(errors.checksumMismatch('sha512', '1234', '5678').message, 'Bad sha512 for downloaded file, got: 1234 while expecting 5678.')
  t.equal(errors.gptMoveFailed().message, 'Can not move backup GPT data structures to the end of disk.')
  t.equal(errors.configDriveFailed().message, 'Could not create configdrive on disk.')
  t.equal(errors.badChecksumType().message, 'Bad checkSumType, expected: sha1, sha256, md5, sha512.')
  // OVH's current guide.
  t.equal(errors.noPartitionTable('raw', 'gzip data').message,
    'image provided format is not of type raw because no partition table was found. It seems to contain: `gzip data`')
})

t.test('the agent\'s partition-table messages', async (t) => {
  t.same(errors.noPartitionTable('qcow2', 'nothing (0 bytes)').toJSON(), {
    code: 'QCOW2_NO_PARTITION_TABLE',
    message: 'Bad format image, the qcow2\'s virtual disk has no partition table, it seems to contain: `nothing (0 bytes)`.',
  })
  t.same(errors.partitionTableInvalid('partition 2 (LBA 10-20) overlaps partition 1 (LBA 5-12).').toJSON(), {
    code: 'PARTITION_TABLE_INVALID',
    message: 'Bad format image, its partition table is not valid: partition 2 (LBA 10-20) overlaps partition 1 (LBA 5-12).',
  })
})

t.test('every constructor makes an InstallError whose code is in the table', async (t) => {
  const made = [
    errors.downloadFailed('u'), errors.downloadRefused('u', 'r'), errors.qcow2TooBig(), errors.qcow2WriteFailed(), errors.badImageFormat(),
    errors.badChecksumType(),
    errors.checksumMismatch('md5', 'a', 'b'), errors.gptMoveFailed(), errors.configDriveFailed(), errors.payloadMissingField('f'),
    errors.payloadBadField('f', 'x'), errors.rawWriteFailed(), errors.imageTypeMismatch('raw', 'qcow2'), errors.qcow2Unsupported('backing file'),
    errors.qcow2Damaged('x'), errors.sectorSizeMismatch(512, '/d', 4096), errors.efiBootloaderNotFound('\\EFI\\x', 'not-in-esp'),
    errors.imageTooBigForDisk(2, '/d', 1), errors.diskUnavailable('/d', 'r'),
    errors.noPartitionTable('raw', 'zeros'), errors.noPartitionTable('qcow2', 'zeros'), errors.partitionTableInvalid('r'),
    errors.cancelled(), errors.cancelledUntouched(), errors.internalError(new Error('x')),
    errors.interrupted(), errors.interruptedUntouched(), errors.busy('j'), errors.notRunning(), errors.shuttingDown(), errors.unauthorized(), errors.notFound(),
    errors.unsupportedMediaType(), errors.bodyTooLarge(1), errors.badRequest('r'), errors.serviceError(new Error('x')),
  ]
  const codes = new Set(made.map((e) => e.code))
  t.same([...codes].sort(), Object.keys(resultMessages).filter((c) => c !== 'INSTALLED').sort(), 'one constructor per code')
  for (const e of made) t.ok(isInstallError(e), e.code)
  t.notOk(isInstallError(new Error('x')))
  t.same(errors.badImageFormat().toJSON(), { code: 'BAD_IMAGE_FORMAT', message: 'Bad format image, expected: qcow2, raw.' })
})

t.test('the success message', async (t) => {
  t.equal(installedMessage({ diskPath: '/dev/sda', bytes: 10, imageBytes: 10, imageType: 'raw', mode: 'memory', checksumType: 'sha512' }),
    'Image installed on /dev/sda: 10 bytes of raw written from memory, sha512 verified.')
  t.equal(installedMessage({ diskPath: '/dev/sda', bytes: 10, imageBytes: 10, imageType: 'raw', mode: 'stream', checksumType: undefined }),
    'Image installed on /dev/sda: 10 bytes of raw written while streaming, no checksum given.')
  // A qcow2's file and its disk differ: both are said (2.5 MB of file, 8 MiB of disk).
  t.equal(installedMessage({ diskPath: '/dev/sda', bytes: 2555904, imageBytes: 8388608, imageType: 'qcow2', mode: 'memory', checksumType: 'sha256' }),
    'Image installed on /dev/sda: 2555904 bytes of qcow2 (8388608 bytes of disk) written from memory, sha256 verified.')
})

t.test('safeUrl strips credentials and signatures', async (t) => {
  t.equal(safeUrl('https://user:pass@example.invalid/a.raw'), 'https://example.invalid/a.raw')
  t.equal(safeUrl('https://h.invalid/a.raw?X-Amz-Signature=abc&X-Amz-Credential=def&part=1'),
    'https://h.invalid/a.raw?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&part=1')
  t.equal(safeUrl('https://h.invalid/a.raw?temp_url_sig=abc&temp_url_expires=1'), 'https://h.invalid/a.raw?temp_url_sig=REDACTED&temp_url_expires=1')
  t.equal(safeUrl('not a url'), '(invalid URL)')
})
