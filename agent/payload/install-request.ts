import type { ChecksumType } from '../errors/install-error-declarations.js'

export type { ChecksumType }
export type ImageType = 'raw' | 'qcow2'

export const checksumHexLength: Record<ChecksumType, number> = {
  md5: 32,
  sha1: 40,
  sha256: 64,
  sha512: 128,
}

/** One install, whichever payload shape it came in (install/start or reinstall). */
export interface InstallRequest {
  /** Which body shape it was parsed from. */
  source: 'install-start' | 'reinstall'
  /** http(s) URL; may hold credentials: show it only through report/redact `safeUrl`. */
  imageUrl: string
  imageType: ImageType
  /** Expected digest of the file as downloaded; `hex` is lower-case. */
  checksum?: { type: ChecksumType; hex: string }
  /** Headers sent with the download, in the order given. Values are secrets. */
  httpHeaders: Array<{ name: string; value: string }>
  /** Host name for the installed system (details.customHostname or customizations.hostname). */
  hostname?: string
  /** configDriveUserData, verbatim. */
  userData?: string
  /** configDriveMetadata as key → string value (meta in meta_data.json). */
  metadata: Record<string, string>
  /** customizations.sshKey: a public key for cloud-init. */
  sshKey?: string
  /** customizations.efiBootloaderPath, e.g. `\EFI\BOOT\BOOTX64.EFI`. */
  efiBootloaderPath?: string
  /**
   * `scrub` (ours, both shapes): make the installed image a fresh clone before its first MiB is
   * written (install/scrub-step); `paths` are the customer's extra guest paths to remove.
   */
  scrub?: { paths: string[] }
  /**
   * A ConfigDrive given whole (`byoi-agent ironic`: the one Ironic sends), used instead of one built
   * from hostname, userData, metadata and sshKey: `iso`, the ISO 9660 as it came, is written as it is
   * where the disk can mount ISO 9660; `files` (read from it, or Ironic's meta_data/user_data) are
   * laid in a FAT otherwise, and are what the mount check compares.
   */
  givenConfigDrive?: { iso?: Buffer; files: Array<{ path: string; data: Buffer }> }
  /**
   * reinstall's `storage[0].diskGroupId`: the disk group whose first free disk receives the image
   * (a whole number from 1; not given: group 1, OVH's default). Chosen under `serve --disk auto`
   * (disk/disk-choice); a service or CLI with a fixed disk takes only 1 (`checkFixedDiskGroup`).
   */
  diskGroupId?: number
}
