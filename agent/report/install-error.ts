/**
 * Every result message the agent can give, made in one place.
 *
 * Clients match on `code`; people read `message`. The OVH messages are kept word for word
 * (see docs/result-messages.md, which a test keeps equal to `resultMessages` below); the agent's
 * own follow the same style: one sentence, the facts that let the customer fix it, never a secret.
 */

export type ChecksumType = 'md5' | 'sha1' | 'sha256' | 'sha512'

/** The message table: one entry per code, the `template` as shown in docs/result-messages.md. */
export const resultMessages = {
  // Success.
  INSTALLED: { ovh: false, template: 'Image installed on DISK: N bytes of TYPE written MODE, CHECK.', when: 'the install succeeded; MODE is `from memory` or `while streaming`, CHECK is `sha512 verified` (the type given) or `no checksum given`; for a qcow2, `N bytes of qcow2` (the file) is followed by `(N bytes of disk)` (its virtual size, what was written)' },
  // OVH's messages, word for word.
  DOWNLOAD_FAILED: { ovh: true, template: 'Could not download image located: `URL`.', when: 'the download failed (network error, HTTP error, body shorter or longer than announced); the URL is shown without credentials, the cause goes to the log' },
  QCOW2_TOO_BIG: { ovh: true, template: 'Could not download, qcow2 image is too big to download in memory.', when: 'the qcow2 does not fit in the memory budget (RAM − 3 GiB, or --memory-limit)' },
  QCOW2_WRITE_FAILED: { ovh: true, template: "Can't write qcow2 on disk.", when: 'the qcow2 image could not be written to the disk' },
  BAD_IMAGE_FORMAT: { ovh: true, template: 'Bad format image, expected: qcow2, raw.', when: 'imageType (or the image itself) is neither qcow2 nor raw' },
  BAD_CHECKSUM_TYPE: { ovh: true, template: 'Bad checkSumType, expected: sha1, sha256, md5, sha512.', when: 'imageCheckSumType is not one of the four (OVH\'s text omits sha512, which it accepts)' },
  CHECKSUM_MISMATCH: { ovh: true, template: 'Bad TYPE for downloaded file, got: HEX while expecting HEX.', when: 'the digest of the downloaded bytes is not the one given' },
  GPT_MOVE_FAILED: { ovh: true, template: 'Can not move backup GPT data structures to the end of disk.', when: 'the GPT cannot be moved to the disk\'s end (found in the verify step, before any write: e.g. the disk is too small for it), or writing it failed' },
  CONFIGDRIVE_FAILED: { ovh: true, template: 'Could not create configdrive on disk.', when: 'the ConfigDrive cannot be built (before the download) or placed (no room, no free slot: in the verify step, before any write), writing it failed, or, mounted read-only at the end of the install, it lacks a file written or holds other bytes' },
  NO_PARTITION_TABLE: { ovh: true, template: 'image provided format is not of type raw because no partition table was found. It seems to contain: `WHAT`', when: 'a raw image with neither a GPT nor an MBR (OVH\'s current guide); WHAT says what its first MiB looks like: `zeros`, `gzip data`, `xz data`, `zstd data`, `an ISO 9660 filesystem`, `an ext2/ext3/ext4 filesystem`, `text (an HTML page)`…; refused before any write' },
  // The agent's own, in the same style.
  QCOW2_NO_PARTITION_TABLE: { ovh: false, template: 'Bad format image, the qcow2\'s virtual disk has no partition table, it seems to contain: `WHAT`.', when: 'the guest disk of a qcow2 has neither a GPT nor an MBR (WHAT as for NO_PARTITION_TABLE; `nothing (0 bytes)` for a virtual size of 0); refused before any write' },
  PARTITION_TABLE_INVALID: { ovh: false, template: 'Bad format image, its partition table is not valid: REASON.', when: 'the image\'s GPT or MBR cannot be installed as it is: headers or entries that fail their checks with no valid backup in the image, a partition outside the usable LBAs or past the disk\'s end, two partitions that overlap; refused before any write' },
  DOWNLOAD_REFUSED: { ovh: false, template: 'Could not download image located: `URL`, the server sent REASON.', when: 'the image server\'s answer cannot be the image as it is, whatever the retries: REASON is `Content-Encoding gzip, expected: identity` (any encoding but identity, as S3 sends for an object stored with that metadata) or `an invalid Content-Length` (malformed, not a safe integer, or given twice with different values; one that is valid but larger than the disk is IMAGE_TOO_BIG_FOR_DISK); refused at once, no byte of that answer kept' },
  PAYLOAD_MISSING_FIELD: { ovh: false, template: 'Missing FIELD, it is required.', when: 'a required payload field is absent or empty' },
  PAYLOAD_BAD_FIELD: { ovh: false, template: 'Bad FIELD, expected: WHAT.', when: 'a payload field has a value the agent cannot use; the message names the field' },
  IMAGE_TYPE_MISMATCH: { ovh: false, template: 'Bad format image, expected: TYPE, got: OTHER.', when: 'the bytes of the image are not of the declared imageType (a qcow2 declared raw, or a raw declared qcow2): nothing is written' },
  QCOW2_UNSUPPORTED: { ovh: false, template: 'Bad format image, qcow2 feature not supported: FEATURE.', when: 'the qcow2 uses a feature that cannot be installed (backing file, external data file, encryption, the corrupt bit, an unknown incompatible feature, a version other than 2 or 3)' },
  QCOW2_DAMAGED: { ovh: false, template: 'Bad format image, qcow2 file is damaged: REASON.', when: 'a qcow2 header or table points outside the file or the virtual disk, or is otherwise inconsistent' },
  SECTOR_SIZE_MISMATCH: { ovh: false, template: 'Bad format image, its partition table uses N-byte sectors but disk DISK has N-byte sectors.', when: 'the image\'s GPT was made for another logical sector size than the disk\'s (a 512-byte image on a 4Kn disk, or the reverse): refused before its partition table is written' },
  RAW_WRITE_FAILED: { ovh: false, template: "Can't write raw on disk.", when: 'writing the raw image to the disk failed (I/O error)' },
  IMAGE_TOO_BIG_FOR_DISK: { ovh: false, template: 'Image is too big for disk, got: N bytes while disk DISK holds N bytes.', when: 'the announced or downloaded size exceeds the disk; refused before any write when the size is announced' },
  DISK_UNAVAILABLE: { ovh: false, template: 'Could not open disk DISK: REASON.', when: 'the target disk cannot be opened or measured' },
  EFI_BOOTLOADER_NOT_FOUND: { ovh: false, template: 'Bad efiBootloaderPath, PATH REASON.', when: "efiBootloaderPath was given and, after writing, the image's EFI system partition has no such file (REASON is `is not in the image's EFI system partition`; names are compared case-insensitively, as UEFI does), or the image has no EFI system partition (REASON is `is given but the image has no EFI system partition`)" },
  CANCELLED: { ovh: false, template: 'Install cancelled, the disk was left unbootable.', when: 'the install was aborted (signal or API cancel) after writing began; before writing, the disk is untouched and the message says so' },
  CANCELLED_UNTOUCHED: { ovh: false, template: 'Install cancelled, the disk was not modified.', when: 'the install was aborted before any byte was written' },
  INTERNAL_ERROR: { ovh: false, template: 'Install failed on an internal error, the disk was left unbootable.', when: 'an unexpected error; details in the log' },
  INTERRUPTED: { ovh: false, template: 'Install interrupted: the agent stopped during the install, the disk OUTCOME.', when: 'the state saved in --state-dir says an install was writing to the disk when the agent stopped (killed, out of memory); at the next start (`serve`, `install`, `recover`) OUTCOME is `was left unbootable` (its first and last MiB zeroed then) or `could not be made unbootable: REASON`' },
  INTERRUPTED_UNTOUCHED: { ovh: false, template: 'Install interrupted: the agent stopped during the install, the disk was not modified.', when: 'the same, but the install had not begun writing (e.g. it was downloading into memory): the disk was left as it was' },
  // The HTTP service's refusals (`serve`, docs/api.md): nothing was installed or changed.
  BUSY: { ovh: false, template: 'An install is already running, job JOB.', when: '`POST /install/start` (HTTP 409) while a job runs; JOB is its id' },
  NOT_RUNNING: { ovh: false, template: 'No install is running.', when: '`POST /install/cancel` (HTTP 409) when no job runs' },
  SHUTTING_DOWN: { ovh: false, template: 'The agent is shutting down, no install can start.', when: '`POST /install/start` (HTTP 503) after SIGTERM or SIGINT' },
  UNAUTHORIZED: { ovh: false, template: 'Missing or wrong bearer token.', when: 'any route but `/health` (HTTP 401) without `Authorization: Bearer TOKEN` holding the token of --token-file' },
  NOT_FOUND: { ovh: false, template: 'No such route, the routes are listed in /openapi.json.', when: 'an unknown path or method (HTTP 404)' },
  UNSUPPORTED_MEDIA_TYPE: { ovh: false, template: 'Bad Content-Type, expected: application/json.', when: 'a request body of another type (HTTP 415)' },
  BODY_TOO_LARGE: { ovh: false, template: 'Request body too large, expected: at most N bytes.', when: 'a request body over the limit (HTTP 413); the limit leaves room for 16 MiB of configDriveUserData' },
  BAD_REQUEST: { ovh: false, template: 'Bad request: REASON.', when: 'a request that is not readable HTTP (HTTP 400): a bad Content-Length, a malformed URL or header' },
  SERVICE_ERROR: { ovh: false, template: 'The agent failed on an internal error, details are in its log.', when: 'an unexpected error in the HTTP service (HTTP 500); a bug, never an answer to bad input' },
} as const satisfies Record<string, { ovh: boolean; template: string; when: string }>

export type ResultCode = keyof typeof resultMessages
export type InstallErrorCode = Exclude<ResultCode, 'INSTALLED'>

export interface InstallErrorOptions {
  /** The underlying error, for the log only (never shown to the customer). */
  cause?: unknown
}

/** A failure of the install: a stable `code` and the customer-facing `message`. */
export class InstallError extends Error {
  readonly code: InstallErrorCode

  constructor (code: InstallErrorCode, message: string, options: InstallErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'InstallError'
    this.code = code
  }

  toJSON (): { code: InstallErrorCode; message: string } {
    return { code: this.code, message: this.message }
  }
}

/** Constructors, one per code: the only place messages are written. */
export const errors = {
  downloadFailed: (safeUrl: string, cause?: unknown) =>
    new InstallError('DOWNLOAD_FAILED', `Could not download image located: \`${safeUrl}\`.`, { cause }),
  downloadRefused: (safeUrl: string, reason: string, cause?: unknown) =>
    new InstallError('DOWNLOAD_REFUSED', `Could not download image located: \`${safeUrl}\`, the server sent ${reason}.`, { cause }),
  qcow2TooBig: (cause?: unknown) =>
    new InstallError('QCOW2_TOO_BIG', 'Could not download, qcow2 image is too big to download in memory.', { cause }),
  qcow2WriteFailed: (cause?: unknown) =>
    new InstallError('QCOW2_WRITE_FAILED', "Can't write qcow2 on disk.", { cause }),
  badImageFormat: (cause?: unknown) =>
    new InstallError('BAD_IMAGE_FORMAT', 'Bad format image, expected: qcow2, raw.', { cause }),
  badChecksumType: () =>
    new InstallError('BAD_CHECKSUM_TYPE', 'Bad checkSumType, expected: sha1, sha256, md5, sha512.'),
  checksumMismatch: (type: ChecksumType, gotHex: string, expectedHex: string) =>
    new InstallError('CHECKSUM_MISMATCH', `Bad ${type} for downloaded file, got: ${gotHex} while expecting ${expectedHex}.`),
  gptMoveFailed: (cause?: unknown) =>
    new InstallError('GPT_MOVE_FAILED', 'Can not move backup GPT data structures to the end of disk.', { cause }),
  configDriveFailed: (cause?: unknown) =>
    new InstallError('CONFIGDRIVE_FAILED', 'Could not create configdrive on disk.', { cause }),
  payloadMissingField: (field: string) =>
    new InstallError('PAYLOAD_MISSING_FIELD', `Missing ${field}, it is required.`),
  payloadBadField: (field: string, expected: string) =>
    new InstallError('PAYLOAD_BAD_FIELD', `Bad ${field}, expected: ${expected}.`),
  imageTypeMismatch: (declared: string, actual: string) =>
    new InstallError('IMAGE_TYPE_MISMATCH', `Bad format image, expected: ${declared}, got: ${actual}.`),
  qcow2Unsupported: (feature: string) =>
    new InstallError('QCOW2_UNSUPPORTED', `Bad format image, qcow2 feature not supported: ${feature}.`),
  qcow2Damaged: (reason: string, cause?: unknown) =>
    new InstallError('QCOW2_DAMAGED', `Bad format image, qcow2 file is damaged: ${reason}.`, { cause }),
  noPartitionTable: (imageType: string, what: string) => imageType === 'qcow2'
    ? new InstallError('QCOW2_NO_PARTITION_TABLE', `Bad format image, the qcow2's virtual disk has no partition table, it seems to contain: \`${what}\`.`)
    : new InstallError('NO_PARTITION_TABLE', `image provided format is not of type raw because no partition table was found. It seems to contain: \`${what}\``),
  partitionTableInvalid: (reason: string, cause?: unknown) =>
    new InstallError('PARTITION_TABLE_INVALID', `Bad format image, its partition table is not valid: ${reason.replace(/\.$/, '')}.`, { cause }),
  sectorSizeMismatch: (imageSectorBytes: number, diskPath: string, diskSectorBytes: number) =>
    new InstallError('SECTOR_SIZE_MISMATCH', `Bad format image, its partition table uses ${imageSectorBytes}-byte sectors but disk ${diskPath} has ${diskSectorBytes}-byte sectors.`),
  rawWriteFailed: (cause?: unknown) =>
    new InstallError('RAW_WRITE_FAILED', "Can't write raw on disk.", { cause }),
  imageTooBigForDisk: (imageBytes: number, diskPath: string, diskBytes: number) =>
    new InstallError('IMAGE_TOO_BIG_FOR_DISK', `Image is too big for disk, got: ${imageBytes} bytes while disk ${diskPath} holds ${diskBytes} bytes.`),
  diskUnavailable: (diskPath: string, reason: string, cause?: unknown) =>
    new InstallError('DISK_UNAVAILABLE', `Could not open disk ${diskPath}: ${reason}.`, { cause }),
  efiBootloaderNotFound: (efiPath: string, problem: 'not-in-esp' | 'no-esp', cause?: unknown) =>
    new InstallError('EFI_BOOTLOADER_NOT_FOUND', problem === 'no-esp'
      ? `Bad efiBootloaderPath, ${efiPath} is given but the image has no EFI system partition.`
      : `Bad efiBootloaderPath, ${efiPath} is not in the image's EFI system partition.`, { cause }),
  cancelled: () =>
    new InstallError('CANCELLED', 'Install cancelled, the disk was left unbootable.'),
  cancelledUntouched: () =>
    new InstallError('CANCELLED_UNTOUCHED', 'Install cancelled, the disk was not modified.'),
  internalError: (cause?: unknown) =>
    new InstallError('INTERNAL_ERROR', 'Install failed on an internal error, the disk was left unbootable.', { cause }),
  interrupted: (zeroFailure?: string) =>
    new InstallError('INTERRUPTED', `Install interrupted: the agent stopped during the install, the disk ${zeroFailure === undefined ? 'was left unbootable' : `could not be made unbootable: ${zeroFailure}`}.`),
  interruptedUntouched: () =>
    new InstallError('INTERRUPTED_UNTOUCHED', 'Install interrupted: the agent stopped during the install, the disk was not modified.'),
  busy: (jobId: string) =>
    new InstallError('BUSY', `An install is already running, job ${jobId}.`),
  notRunning: () =>
    new InstallError('NOT_RUNNING', 'No install is running.'),
  shuttingDown: () =>
    new InstallError('SHUTTING_DOWN', 'The agent is shutting down, no install can start.'),
  unauthorized: () =>
    new InstallError('UNAUTHORIZED', 'Missing or wrong bearer token.'),
  notFound: () =>
    new InstallError('NOT_FOUND', 'No such route, the routes are listed in /openapi.json.'),
  unsupportedMediaType: () =>
    new InstallError('UNSUPPORTED_MEDIA_TYPE', 'Bad Content-Type, expected: application/json.'),
  bodyTooLarge: (limitBytes: number) =>
    new InstallError('BODY_TOO_LARGE', `Request body too large, expected: at most ${limitBytes} bytes.`),
  badRequest: (reason: string, cause?: unknown) =>
    new InstallError('BAD_REQUEST', `Bad request: ${reason}.`, { cause }),
  serviceError: (cause?: unknown) =>
    new InstallError('SERVICE_ERROR', 'The agent failed on an internal error, details are in its log.', { cause }),
}

export type InstallMode = 'memory' | 'stream'

/** The one success message. */
export function installedMessage (info: { diskPath: string; bytes: number; imageBytes: number; imageType: string; mode: InstallMode; checksumType: ChecksumType | undefined }): string {
  const mode = info.mode === 'memory' ? 'from memory' : 'while streaming'
  const check = info.checksumType === undefined ? 'no checksum given' : `${info.checksumType} verified`
  // A qcow2's file and the disk it holds differ in size: both are said.
  const disk = info.imageType === 'qcow2' ? ` (${info.imageBytes} bytes of disk)` : ''
  return `Image installed on ${info.diskPath}: ${info.bytes} bytes of ${info.imageType}${disk} written ${mode}, ${check}.`
}

/** Callers match on `code`, not on `instanceof` (errors may cross module copies or workers). */
export function isInstallError (err: unknown): err is InstallError {
  if (!(err instanceof Error) || err.name !== 'InstallError') return false
  const code: unknown = (err as Error & { code?: unknown }).code
  return typeof code === 'string' && code !== 'INSTALLED' && Object.hasOwn(resultMessages, code)
}
