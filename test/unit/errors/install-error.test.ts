import t from 'tap'
import { installErrorDeclarations } from '../../../agent/errors/install-error-declarations.js'
import { errors, httpStatusOf, isInstallError, isResultCode, type InstallErrorCode } from '../../../agent/errors/install-error.js'
import { checkDeclaredConstructors, type ConstructorSamples } from '../../helpers/declared-constructors.js'

const cause = new Error('the underlying error')

/** Every constructor, with arguments (and a cause where the declaration takes one). */
const samples: ConstructorSamples<typeof errors> = {
  downloadFailed: ['https://h.invalid/a.raw', cause],
  qcow2TooBig: [cause],
  qcow2WriteFailed: [cause],
  badImageFormat: [cause],
  badChecksumType: [],
  checksumMismatch: ['sha256', 'ab12', 'cd34'],
  gptMoveFailed: [cause],
  configDriveFailed: [cause],
  noPartitionTable: ['gzip data'],
  qcow2NoPartitionTable: ['nothing (0 bytes)'],
  partitionTableInvalid: ['partition 2 overlaps partition 1.', cause],
  downloadRefused: ['https://h.invalid/a.raw', 'Content-Encoding gzip, expected: identity', cause],
  imageChanged: ['https://h.invalid/a.qcow2', 'its size is now 2048 bytes, not 1024', cause],
  payloadMissingField: ['imageURL'],
  payloadBadField: ['imageType', 'qcow2, raw'],
  imageTypeMismatch: ['raw', 'qcow2'],
  qcow2Unsupported: ['backing file'],
  qcow2Damaged: ['L1 table past the end of the file', cause],
  compressedImageInvalid: ['zstd', 'it ends before its end mark (truncated)', cause],
  sectorSizeMismatch: [512, '/dev/sda', 4096],
  rawWriteFailed: [cause],
  imageTooBigForDisk: [2048, '/dev/sda', 1024],
  diskUnavailable: ['/dev/sda', 'ENOENT', cause],
  diskNotChosen: ['disk group 3 does not exist: this server has group 1 (NVMe, 894 GiB: nvme0n1, nvme1n1)', cause],
  scrubFailed: ['partition 2 (xfs) could not be mounted: unknown filesystem type', cause],
  captureUploadFailed: ['https://h.invalid/a.qcow2', cause],
  captureUploadRefused: ['https://h.invalid/a.qcow2', 'HTTP 403 Forbidden', cause],
  captureReadFailed: ['/dev/sda', 'a read failed at byte 4096', cause],
  captureCancelled: [],
  captureInternalError: [cause],
  captureInterrupted: [],
  captureDiskChanged: ['/dev/sda', 1234, cause],
  efiBootloaderNotFound: ['\\EFI\\BOOT\\BOOTX64.EFI', 'not-in-esp', cause],
  cancelled: [],
  cancelledUntouched: [],
  internalError: [cause],
  interrupted: ['zeroing /dev/sda failed'],
  interruptedUntouched: [],
}

t.test('every constructor is made from its declaration: its code, its message, its cause', async (t) => {
  checkDeclaredConstructors(t, {
    declarations: installErrorDeclarations,
    constructors: errors,
    samples,
    check: (t, made, code) => {
      t.ok(isInstallError(made), 'an InstallError')
      t.ok(made instanceof Error && made.name === 'InstallError')
      t.equal(httpStatusOf(code as InstallErrorCode), Reflect.get(installErrorDeclarations[code as InstallErrorCode], 'status'), 'the declared HTTP status')
    },
  })
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
  t.equal(errors.noPartitionTable('gzip data').message,
    'image provided format is not of type raw because no partition table was found. It seems to contain: `gzip data`')
  const ovh = Object.entries(installErrorDeclarations).filter(([, d]) => d.ovh).map(([code]) => code)
  t.same(ovh, [
    'DOWNLOAD_FAILED', 'QCOW2_TOO_BIG', 'QCOW2_WRITE_FAILED', 'BAD_IMAGE_FORMAT', 'BAD_CHECKSUM_TYPE', 'CHECKSUM_MISMATCH', 'GPT_MOVE_FAILED',
    'CONFIGDRIVE_FAILED', 'NO_PARTITION_TABLE',
  ], 'OVH\'s codes')
})

t.test('the agent\'s own messages, for the values they are given', async (t) => {
  t.same(errors.qcow2NoPartitionTable('nothing (0 bytes)').toJSON(), {
    code: 'QCOW2_NO_PARTITION_TABLE',
    message: 'Bad format image, the qcow2\'s virtual disk has no partition table, it seems to contain: `nothing (0 bytes)`.',
  })
  t.same(errors.partitionTableInvalid('partition 2 (LBA 10-20) overlaps partition 1 (LBA 5-12).').toJSON(), {
    code: 'PARTITION_TABLE_INVALID',
    message: 'Bad format image, its partition table is not valid: partition 2 (LBA 10-20) overlaps partition 1 (LBA 5-12).',
  })
  t.equal(errors.efiBootloaderNotFound('\\EFI\\x', 'no-esp').message, 'Bad efiBootloaderPath, \\EFI\\x is given but the image has no EFI system partition.')
  t.equal(errors.efiBootloaderNotFound('\\EFI\\x', 'not-in-esp').message, 'Bad efiBootloaderPath, \\EFI\\x is not in the image\'s EFI system partition.')
  t.equal(errors.interrupted().message, 'Install interrupted: the agent stopped during the install, the disk was left unbootable.')
  t.equal(errors.interrupted('zeroing /dev/sda failed').message,
    'Install interrupted: the agent stopped during the install, the disk could not be made unbootable: zeroing /dev/sda failed.')
  t.equal(errors.imageTooBigForDisk(2048, '/dev/sda', 1024).message, 'Image is too big for disk, got: 2048 bytes while disk /dev/sda holds 1024 bytes.')
  t.same(errors.badImageFormat().toJSON(), { code: 'BAD_IMAGE_FORMAT', message: 'Bad format image, expected: qcow2, raw.' })
})

t.test('the payload\'s refusals carry their HTTP status; other failures none', async (t) => {
  const payloadCodes: InstallErrorCode[] = ['PAYLOAD_MISSING_FIELD', 'PAYLOAD_BAD_FIELD', 'BAD_IMAGE_FORMAT', 'BAD_CHECKSUM_TYPE']
  t.same(payloadCodes.map((code) => httpStatusOf(code)), [400, 400, 400, 400])
  t.equal(httpStatusOf('INTERNAL_ERROR'), undefined)
  t.equal(httpStatusOf('DOWNLOAD_FAILED'), undefined)
})

t.test('isInstallError and isResultCode', async (t) => {
  t.notOk(isInstallError(new Error('x')))
  t.notOk(isInstallError(Object.assign(new Error('x'), { name: 'InstallError', code: 'BUSY' })), 'the service\'s refusals are not install failures')
  t.ok(isInstallError(Object.assign(new Error('x'), { name: 'InstallError', code: 'CANCELLED' })), 'matched on name and code, not on the class')
  t.ok(isResultCode('INSTALLED'))
  t.ok(isResultCode('CANCELLED'))
  t.notOk(isResultCode('BUSY'))
  t.notOk(isResultCode('toString'))
})
