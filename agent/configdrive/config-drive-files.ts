import { randomUUID } from 'node:crypto'

/** One file of the ConfigDrive, by its path inside the filesystem (`/`-separated, no leading `/`). */
export interface ConfigDriveFile {
  /** e.g. `openstack/latest/meta_data.json` */
  path: string
  data: Buffer
}

/** What the ConfigDrive carries (an install request has these fields). */
export interface ConfigDriveRequest {
  /** The host name (meta_data.json `hostname` and `name`). */
  hostname?: string
  /** user_data, verbatim. */
  userData?: string
  /** meta_data.json `meta`. */
  metadata: Record<string, string>
  /** A public key (meta_data.json `public_keys.default`). */
  sshKey?: string
  /**
   * A ConfigDrive given whole instead of built from the fields above (OpenStack Ironic's: the ISO 9660
   * its conductor made, with the files read from it, or the files of its `meta_data`/`user_data`).
   * `iso` is written as it is where the disk can mount ISO 9660; otherwise the files are laid in a FAT.
   */
  givenConfigDrive?: { iso?: Buffer; files: ConfigDriveFile[] }
}

export interface ConfigDriveFilesOptions {
  /** The instance id cloud-init sees (`uuid` in meta_data.json); a random v4 UUID when absent. */
  uuid?: string
  /** OpenStack network_data.json content; the file is written only when given. */
  networkData?: unknown
}

/**
 * Only `latest/`: cloud-init reads the newest *dated* folder it knows (openstack/2012-08-10, …) and
 * ignores `latest/` whenever one exists, so a dated folder with fewer files would hide ours.
 */
const FOLDER = 'openstack/latest'

/**
 * The files of a ConfigDrive as cloud-init's ConfigDrive datasource reads them. Without user data
 * the drive still holds meta_data.json, whose `uuid` cloud-init requires (it becomes the instance id).
 * Deterministic when `options.uuid` is given.
 */
export function configDriveFiles (request: ConfigDriveRequest, options: ConfigDriveFilesOptions = {}): ConfigDriveFile[] {
  const uuid = options.uuid ?? randomUUID()
  if (uuid.length === 0) throw new RangeError('ConfigDrive uuid must not be empty')

  // Key order is fixed so the same request gives the same bytes.
  const metaData: Record<string, unknown> = { uuid }
  if (request.hostname !== undefined && request.hostname !== '') {
    metaData.hostname = request.hostname
    metaData.name = request.hostname
  }
  metaData.launch_index = 0
  if (Object.keys(request.metadata).length > 0) metaData.meta = { ...request.metadata }
  if (request.sshKey !== undefined && request.sshKey !== '') metaData.public_keys = { default: request.sshKey }

  const files: ConfigDriveFile[] = [
    { path: `${FOLDER}/meta_data.json`, data: Buffer.from(JSON.stringify(metaData), 'utf8') },
  ]
  if (options.networkData !== undefined) {
    files.push({ path: `${FOLDER}/network_data.json`, data: Buffer.from(JSON.stringify(options.networkData), 'utf8') })
  }
  if (request.userData !== undefined) files.push({ path: `${FOLDER}/user_data`, data: Buffer.from(request.userData, 'utf8') })
  files.push({ path: `${FOLDER}/vendor_data.json`, data: Buffer.from('{}', 'utf8') })
  return files
}
