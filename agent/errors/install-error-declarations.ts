/**
 * Every way an install can fail, declared once: the code clients match on, the constructor's name,
 * whether the words are OVH's, when it is given (docs/result-messages.md), the HTTP status when the
 * service answers with it, and the one function that writes the message. `errors.*`
 * (install-error.ts) and the docs' table are made from these.
 *
 * OVH's messages are kept word for word; the agent's own follow the same style: one sentence, the
 * facts that let the customer fix it, never a secret.
 */
import { declareErrors, shown, type Shown } from './message-declaration.js'

/** The checksum types the agent accepts (imageCheckSumType; payload/install-request uses it). */
export type ChecksumType = 'md5' | 'sha1' | 'sha256' | 'sha512'

/** Why efiBootloaderPath is refused: the file is not in the image's EFI system partition, or the image has none. */
export type EfiBootloaderProblem = 'not-in-esp' | 'no-esp'

export const installErrorDeclarations = declareErrors({
  // OVH's messages, word for word.
  DOWNLOAD_FAILED: {
    constructorName: 'downloadFailed',
    ovh: true,
    withCause: true,
    message: (safeUrl: Shown<string>) => `Could not download image located: \`${safeUrl}\`.`,
    placeholders: ['URL'],
    when: 'the download failed (network error, HTTP error, body shorter or longer than announced); the URL is shown ' +
      'without credentials, the cause goes to the log',
  },
  QCOW2_TOO_BIG: {
    constructorName: 'qcow2TooBig',
    ovh: true,
    withCause: true,
    message: () => 'Could not download, qcow2 image is too big to download in memory.',
    placeholders: [],
    when: 'a qcow2 whose server announced no size grows past the memory budget (RAM − 3 GiB, or --memory-limit), ' +
      'or, streamed without Range, its data met before the tables that place it would take more than the budget',
  },
  QCOW2_WRITE_FAILED: {
    constructorName: 'qcow2WriteFailed',
    ovh: true,
    withCause: true,
    message: () => "Can't write qcow2 on disk.",
    placeholders: [],
    when: 'the qcow2 image could not be written to the disk',
  },
  BAD_IMAGE_FORMAT: {
    constructorName: 'badImageFormat',
    ovh: true,
    withCause: true,
    status: 400,
    message: () => 'Bad format image, expected: qcow2, raw.',
    placeholders: [],
    when: 'imageType (or the image itself) is neither qcow2 nor raw',
  },
  BAD_CHECKSUM_TYPE: {
    constructorName: 'badChecksumType',
    ovh: true,
    status: 400,
    message: () => 'Bad checkSumType, expected: sha1, sha256, md5, sha512.',
    placeholders: [],
    when: 'imageCheckSumType is not one of the four (OVH\'s text omits sha512, which it accepts)',
  },
  CHECKSUM_MISMATCH: {
    constructorName: 'checksumMismatch',
    ovh: true,
    message: (type: Shown<ChecksumType>, gotHex: Shown<string>, expectedHex: Shown<string>) =>
      `Bad ${type} for downloaded file, got: ${gotHex} while expecting ${expectedHex}.`,
    placeholders: ['TYPE', 'HEX', 'HEX'],
    when: 'the digest of the downloaded bytes is not the one given',
  },
  GPT_MOVE_FAILED: {
    constructorName: 'gptMoveFailed',
    ovh: true,
    withCause: true,
    message: () => 'Can not move backup GPT data structures to the end of disk.',
    placeholders: [],
    when: 'the GPT cannot be moved to the disk\'s end (found in the verify step, before any write: e.g. the disk is too small for it), or writing it failed',
  },
  CONFIGDRIVE_FAILED: {
    constructorName: 'configDriveFailed',
    ovh: true,
    withCause: true,
    message: () => 'Could not create configdrive on disk.',
    placeholders: [],
    when: 'the ConfigDrive cannot be built (before the download) or placed (no room, no free slot: in the verify step, ' +
      'before any write), writing it failed, or, mounted read-only at the end of the install, it lacks a file written ' +
      'or holds other bytes',
  },
  NO_PARTITION_TABLE: {
    constructorName: 'noPartitionTable',
    ovh: true,
    message: (what: Shown<string>) => `image provided format is not of type raw because no partition table was found. It seems to contain: \`${what}\``,
    placeholders: ['WHAT'],
    when: 'a raw image with neither a GPT nor an MBR (OVH\'s current guide); WHAT says what its first MiB looks like: ' +
      '`zeros`, `an ISO 9660 filesystem`, `an ext2/ext3/ext4 filesystem`, `text (an HTML page)`, `bzip2 data`…; a gzip, ' +
      'zstd or xz file is decompressed first, WHAT then says what it holds; refused before any write',
  },
  // The agent's own, in the same style.
  QCOW2_NO_PARTITION_TABLE: {
    constructorName: 'qcow2NoPartitionTable',
    ovh: false,
    message: (what: Shown<string>) => `Bad format image, the qcow2's virtual disk has no partition table, it seems to contain: \`${what}\`.`,
    placeholders: ['WHAT'],
    when: 'the guest disk of a qcow2 has neither a GPT nor an MBR (WHAT as for NO_PARTITION_TABLE; `nothing (0 bytes)` ' +
      'for a virtual size of 0); refused before any write',
  },
  PARTITION_TABLE_INVALID: {
    constructorName: 'partitionTableInvalid',
    ovh: false,
    withCause: true,
    // The reason may come as a sentence: its full stop is the message's.
    message: (reason: Shown<string>) => `Bad format image, its partition table is not valid: ${shown(reason, (text) => text.replace(/\.$/, ''))}.`,
    placeholders: ['REASON'],
    when: 'the image\'s GPT or MBR cannot be installed as it is: headers or entries that fail their checks with no valid ' +
      'backup in the image, a partition outside the usable LBAs or past the disk\'s end, two partitions that overlap; ' +
      'refused before any write',
  },
  DOWNLOAD_REFUSED: {
    constructorName: 'downloadRefused',
    ovh: false,
    withCause: true,
    message: (safeUrl: Shown<string>, reason: Shown<string>) => `Could not download image located: \`${safeUrl}\`, the server sent ${reason}.`,
    placeholders: ['URL', 'REASON'],
    when: 'the image server\'s answer cannot be the image as it is, whatever the retries: REASON is `Content-Encoding ' +
      'gzip, expected: identity` (any encoding but identity, as S3 sends for an object stored with that metadata) or ' +
      '`an invalid Content-Length` (malformed, not a safe integer, or given twice with different values; one that is ' +
      'valid but larger than the disk is IMAGE_TOO_BIG_FOR_DISK); refused at once, no byte of that answer kept',
  },
  IMAGE_CHANGED: {
    constructorName: 'imageChanged',
    ovh: false,
    withCause: true,
    message: (safeUrl: Shown<string>, reason: Shown<string>) =>
      `Could not download image located: \`${safeUrl}\`, the image changed while it was being read: ${reason}.`,
    placeholders: ['URL', 'REASON'],
    when: 'the image is read in more than one request (a qcow2\'s tables first, then the whole file) and the server ' +
      'shows another version of it than the one first read: REASON is `the server sent the whole file of another ' +
      'version` (its If-Range did not match), `the server sent bytes of another version (another ETag)` (or Last-Modified) ' +
      'or `its size is now N bytes, not N`; not retried, no byte of that answer kept',
  },
  PAYLOAD_MISSING_FIELD: {
    constructorName: 'payloadMissingField',
    ovh: false,
    status: 400,
    message: (field: Shown<string>) => `Missing ${field}, it is required.`,
    placeholders: ['FIELD'],
    when: 'a required payload field is absent or empty',
  },
  PAYLOAD_BAD_FIELD: {
    constructorName: 'payloadBadField',
    ovh: false,
    status: 400,
    message: (field: Shown<string>, expected: Shown<string>) => `Bad ${field}, expected: ${expected}.`,
    placeholders: ['FIELD', 'WHAT'],
    when: 'a payload field has a value the agent cannot use; the message names the field',
  },
  IMAGE_TYPE_MISMATCH: {
    constructorName: 'imageTypeMismatch',
    ovh: false,
    message: (declared: Shown<string>, actual: Shown<string>) => `Bad format image, expected: ${declared}, got: ${actual}.`,
    placeholders: ['TYPE', 'OTHER'],
    when: 'the bytes of the image are not of the declared imageType (a qcow2 declared raw, or a raw declared qcow2): nothing is written',
  },
  QCOW2_UNSUPPORTED: {
    constructorName: 'qcow2Unsupported',
    ovh: false,
    message: (feature: Shown<string>) => `Bad format image, qcow2 feature not supported: ${feature}.`,
    placeholders: ['FEATURE'],
    when: 'the qcow2 uses a feature that cannot be installed (backing file, external data file, encryption, the corrupt ' +
      'bit, an unknown incompatible feature, a version other than 2 or 3)',
  },
  QCOW2_DAMAGED: {
    constructorName: 'qcow2Damaged',
    ovh: false,
    withCause: true,
    message: (reason: Shown<string>) => `Bad format image, qcow2 file is damaged: ${reason}.`,
    placeholders: ['REASON'],
    when: 'a qcow2 header or table points outside the file or the virtual disk, or is otherwise inconsistent',
  },
  COMPRESSED_IMAGE_INVALID: {
    constructorName: 'compressedImageInvalid',
    ovh: false,
    withCause: true,
    message: (compression: Shown<string>, reason: Shown<string>) => `Bad format image, its ${compression} data cannot be decompressed: ${reason}.`,
    placeholders: ['KIND', 'REASON'],
    when: 'a compressed raw image (KIND is `gzip`, `zstd` or `xz`, recognised by its magic number) is cut short (REASON is ' +
      '`it ends before its end mark (truncated)`) or holds bytes its decoder refuses (`it cannot be decoded (…)`: corrupt ' +
      'data, a checksum that does not match, bytes after the last frame or stream, or an option the decoder lacks, such as ' +
      'an xz SHA-256 check or BCJ filter); streamed, the disk is left unbootable; from memory, nothing was written before ' +
      'the digest matched',
  },
  SECTOR_SIZE_MISMATCH: {
    constructorName: 'sectorSizeMismatch',
    ovh: false,
    message: (imageSectorBytes: Shown<number>, diskPath: Shown<string>, diskSectorBytes: Shown<number>) =>
      `Bad format image, its partition table uses ${imageSectorBytes}-byte sectors but disk ${diskPath} has ${diskSectorBytes}-byte sectors.`,
    placeholders: ['N', 'DISK', 'N'],
    when: 'the image\'s GPT was made for another logical sector size than the disk\'s (a 512-byte image on a 4Kn disk, or ' +
      'the reverse): refused before its partition table is written',
  },
  RAW_WRITE_FAILED: {
    constructorName: 'rawWriteFailed',
    ovh: false,
    withCause: true,
    message: () => "Can't write raw on disk.",
    placeholders: [],
    when: 'writing the raw image to the disk failed (I/O error)',
  },
  IMAGE_TOO_BIG_FOR_DISK: {
    constructorName: 'imageTooBigForDisk',
    ovh: false,
    message: (imageBytes: Shown<number>, diskPath: Shown<string>, diskBytes: Shown<number>) =>
      `Image is too big for disk, got: ${imageBytes} bytes while disk ${diskPath} holds ${diskBytes} bytes.`,
    placeholders: ['N', 'DISK', 'N'],
    when: 'the announced or downloaded size exceeds the disk; refused before any write when the size is announced',
  },
  DISK_UNAVAILABLE: {
    constructorName: 'diskUnavailable',
    ovh: false,
    withCause: true,
    message: (diskPath: Shown<string>, reason: Shown<string>) => `Could not open disk ${diskPath}: ${reason}.`,
    placeholders: ['DISK', 'REASON'],
    when: 'the target disk cannot be opened or measured',
  },
  DISK_NOT_CHOSEN: {
    constructorName: 'diskNotChosen',
    ovh: false,
    withCause: true,
    message: (reason: Shown<string>) => `No disk to install on: ${reason}.`,
    placeholders: ['REASON'],
    when: 'the target disk is chosen by the agent and none can be: under `serve --disk auto`, when the install starts, the ' +
      'payload\'s disk group does not exist or has no disk that is not in use, or no disk is free (REASON lists the groups or ' +
      'each disk and why); `install --disk hints:…`, no disk or more than one matches the root device hints (docs/disk-choice.md); ' +
      'the disk was not touched',
  },
  SCRUB_FAILED: {
    constructorName: 'scrubFailed',
    ovh: false,
    withCause: true,
    message: (reason: Shown<string>) => `Could not scrub the image: ${reason}, the disk was left unbootable.`,
    placeholders: ['REASON'],
    when: 'scrub was asked (the payload\'s `scrub`) and, after the image was written and before its first MiB, its root ' +
      'filesystem could not be found (REASON: `no ext4, XFS or Btrfs filesystem in the image`, `no root filesystem (no ' +
      '/etc/os-release) in partitions …`), mounted (`partition N (TYPE) could not be mounted: …`), or scrubbed; the disk\'s ' +
      'first and last MiB are zeroed',
  },
  CAPTURE_UPLOAD_FAILED: {
    constructorName: 'captureUploadFailed',
    ovh: false,
    withCause: true,
    message: (safeUrl: Shown<string>) => `Could not upload image to: \`${safeUrl}\`.`,
    placeholders: ['URL'],
    when: 'a capture\'s upload failed after its retries (network error, HTTP 5xx, a connection dropped; to S3, a request of the ' +
      'multipart upload, or a CompleteMultipartUpload answered 200 with an error), or its URL (an S3 endpoint) is not an ' +
      'http(s) one; the URL is shown without credentials (secret query parameters redacted), the cause goes to the log; ' +
      'nothing is reported as captured, and an S3 multipart upload is aborted (no part left stored)',
  },
  CAPTURE_UPLOAD_REFUSED: {
    constructorName: 'captureUploadRefused',
    ovh: false,
    withCause: true,
    message: (safeUrl: Shown<string>, status: Shown<string>) => `Could not upload image to: \`${safeUrl}\`, the server answered ${status}.`,
    placeholders: ['URL', 'STATUS'],
    when: 'the upload\'s server refused it (HTTP 4xx: 401 or 403, credentials or a presigned URL expired; 413, too large; ' +
      'S3: its error code added, e.g. HTTP 403 (SignatureDoesNotMatch), HTTP 404 (NoSuchBucket)); not retried; an S3 multipart ' +
      'upload is aborted',
  },
  CAPTURE_READ_FAILED: {
    constructorName: 'captureReadFailed',
    ovh: false,
    withCause: true,
    message: (diskPath: Shown<string>, reason: Shown<string>) => `Could not capture disk ${diskPath}: ${reason}, nothing was captured.`,
    placeholders: ['DISK', 'REASON'],
    when: 'reading the disk to capture failed (REASON: `a read failed at byte N`), or its size changed while it was captured ' +
      '(its bytes changing is CAPTURE_DISK_CHANGED, where a compressed qcow2 capture can see it) ' +
      '(`it changed size (N bytes, now M)`, checked once uploaded, before CAPTURED is said; `its size could not be measured ' +
      'again`); the disk was not written; an upload that was completed holds an image that must not be used',
  },
  CAPTURE_CANCELLED: {
    constructorName: 'captureCancelled',
    ovh: false,
    message: () => 'Capture cancelled, the disk was not modified and nothing was captured.',
    placeholders: [],
    when: 'a capture was aborted (signal or API cancel); a multipart upload under way is aborted',
  },
  CAPTURE_INTERNAL_ERROR: {
    constructorName: 'captureInternalError',
    ovh: false,
    withCause: true,
    message: () => 'Capture failed on an internal error, the disk was not modified and nothing was captured.',
    placeholders: [],
    when: 'an unexpected error during a capture; details in the log',
  },
  CAPTURE_INTERRUPTED: {
    constructorName: 'captureInterrupted',
    ovh: false,
    message: () => 'Capture interrupted: the agent stopped during the capture, the disk was not modified and nothing was captured.',
    placeholders: [],
    when: 'the state saved in --state-dir says a capture was running when the agent stopped; an upload it had begun is not ' +
      'complete and must not be used',
  },
  CAPTURE_DISK_CHANGED: {
    constructorName: 'captureDiskChanged',
    ovh: false,
    withCause: true,
    message: (diskPath: Shown<string>, cluster: Shown<number>) =>
      `Could not capture ${diskPath}: it changed while it was read (cluster ${cluster} no longer compresses to the size laid out ` +
      'in the first pass); capture it again with nothing writing to it.',
    placeholders: ['DISK', 'N'],
    when: 'a compressed qcow2 capture: a cluster read again in the second pass compressed to another size than in the first, ' +
      'whose sizes the tables already sent were made from; the upload stops there (never a corrupt image) and nothing is ' +
      'reported as captured',
  },
  EFI_BOOTLOADER_NOT_FOUND: {
    constructorName: 'efiBootloaderNotFound',
    ovh: false,
    withCause: true,
    message: (efiPath: Shown<string>, problem: Shown<EfiBootloaderProblem>) =>
      `Bad efiBootloaderPath, ${efiPath} ${shown(problem, (p) => p === 'no-esp'
        ? 'is given but the image has no EFI system partition'
        : 'is not in the image\'s EFI system partition')}.`,
    placeholders: ['PATH', 'REASON'],
    when: "efiBootloaderPath was given and, after writing, the image's EFI system partition has no such file (REASON is " +
      "`is not in the image's EFI system partition`; names are compared case-insensitively, as UEFI does), or the " +
      "image has no EFI system partition (REASON is `is given but the image has no EFI system partition`)",
  },
  CANCELLED: {
    constructorName: 'cancelled',
    ovh: false,
    message: () => 'Install cancelled, the disk was left unbootable.',
    placeholders: [],
    when: 'the install was aborted (signal or API cancel) after writing began; before writing, the disk is untouched and the message says so',
  },
  CANCELLED_UNTOUCHED: {
    constructorName: 'cancelledUntouched',
    ovh: false,
    message: () => 'Install cancelled, the disk was not modified.',
    placeholders: [],
    when: 'the install was aborted before any byte was written',
  },
  INTERNAL_ERROR: {
    constructorName: 'internalError',
    ovh: false,
    withCause: true,
    message: () => 'Install failed on an internal error, the disk was left unbootable.',
    placeholders: [],
    when: 'an unexpected error; details in the log',
  },
  INTERRUPTED: {
    constructorName: 'interrupted',
    ovh: false,
    // zeroFailure: why the disk could not be made unbootable; none when it was.
    message: (zeroFailure?: Shown<string>) =>
      `Install interrupted: the agent stopped during the install, the disk ${shown(zeroFailure, (failure) => failure === undefined
        ? 'was left unbootable'
        : `could not be made unbootable: ${failure}`)}.`,
    placeholders: ['OUTCOME'],
    when: 'the state saved in --state-dir says an install was writing to the disk when the agent stopped (killed, out of ' +
      'memory); at the next start (`serve`, `install`, `recover`) OUTCOME is `was left unbootable` (its first and ' +
      'last MiB zeroed then) or `could not be made unbootable: REASON`',
  },
  INTERRUPTED_UNTOUCHED: {
    constructorName: 'interruptedUntouched',
    ovh: false,
    message: () => 'Install interrupted: the agent stopped during the install, the disk was not modified.',
    placeholders: [],
    when: 'the same, but the install had not begun writing (e.g. it was downloading into memory): the disk was left as it was',
  },
})
