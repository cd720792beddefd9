/**
 * The success messages, declared as the failures are (message-declaration): their words written
 * once, the docs' template made from them. An install ends in INSTALLED, a capture in CAPTURED.
 */
import type { ChecksumType } from './install-error-declarations.js'
import { declareMessages, shown, type Shown } from './message-declaration.js'

/** How the image reached the disk: from memory once downloaded whole, or while streaming. */
export type InstallMode = 'memory' | 'stream'

export const installedDeclaration = declareMessages({
  INSTALLED: {
    ovh: false,
    message: (
      diskPath: Shown<string>, bytes: Shown<number>, imageBytes: Shown<number>, imageType: Shown<string>,
      mode: Shown<InstallMode>, checksumType: Shown<ChecksumType | undefined>,
    ) => {
      // A qcow2's or a compressed image's file and the disk it holds differ in size: both are said.
      const disk = typeof imageType === 'string' && imageType !== 'raw' ? ` (${imageBytes} bytes of disk)` : ''
      const how = shown(mode, (m) => m === 'memory' ? 'from memory' : 'while streaming')
      const check = shown(checksumType, (type) => type === undefined ? 'no checksum given' : `${type} verified`)
      return `Image installed on ${diskPath}: ${bytes} bytes of ${imageType}${disk} written ${how}, ${check}.`
    },
    placeholders: ['DISK', 'N', 'N', 'TYPE', 'MODE', 'CHECK'],
    when: 'the install succeeded; MODE is `from memory` or `while streaming`, CHECK is `sha512 verified` (the type given) ' +
      'or `no checksum given`; TYPE is `raw`, `qcow2`, or for a compressed raw image `gzip-compressed raw`, `zstd-compressed raw` or ' +
      '`xz-compressed raw`; ' +
      'but for `raw`, `N bytes of TYPE` (the file) is followed by ' +
      '`(N bytes of disk)` (the qcow2\'s virtual size or the decompressed size: what was written)',
  },
  CAPTURED: {
    ovh: false,
    message: (
      diskPath: Shown<string>, safeUrl: Shown<string>, bytes: Shown<number>, format: Shown<string>, checksumType: Shown<ChecksumType>, digest: Shown<string>,
    ) =>
      `Captured ${diskPath} to \`${safeUrl}\`: ${bytes} bytes of ${format}, ${checksumType} ${digest}.`,
    placeholders: ['DISK', 'URL', 'N', 'FORMAT', 'TYPE', 'DIGEST'],
    when: 'a capture succeeded: the image is uploaded whole (a multipart upload completed); FORMAT is `qcow2`, ' +
      '`zstd-compressed qcow2`, `raw` or `zstd-compressed raw`, the digest is over the bytes as uploaded; the URL is shown ' +
      'without credentials (secret query parameters redacted)',
  },
})

/** The capture's success message. */
export function capturedMessage (info: {
  diskPath: string; safeUrl: string; bytes: number; format: string; checksumType: ChecksumType; digestHex: string
}): string {
  return installedDeclaration.CAPTURED.message(info.diskPath, info.safeUrl, info.bytes, info.format, info.checksumType, info.digestHex)
}

/** The success message. */
export function installedMessage (info: {
  diskPath: string; bytes: number; imageBytes: number; imageType: string; mode: InstallMode; checksumType: ChecksumType | undefined
}): string {
  return installedDeclaration.INSTALLED.message(info.diskPath, info.bytes, info.imageBytes, info.imageType, info.mode, info.checksumType)
}
