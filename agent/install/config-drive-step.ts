import { buildConfigDrive, readFatLabel, readIsoVolumeId, type ConfigDrive, type ConfigDriveFile } from '../configdrive/index.js'
import type { ImageIo } from '../disk/block-io.js'
import { partitionReader } from '../disk/efi-system-partition.js'
import { addConfigDrivePartition, readBytes, type AddedPartition } from '../disk/partition-table.js'
import type { InstallRequest } from '../payload/install-request.js'
import { errors, isInstallError } from '../errors/install-error.js'

const CONFIG_DRIVE_BYTES = 64 * 1024 * 1024 // 64 MiB, ironic's partition size
const ISO_LIMIT_SECTOR_BYTES = 2048 // Linux mounts ISO 9660 only from devices with sectors up to 2048 bytes

export interface ConfigDriveResult {
  partition: AddedPartition
  filesystem: ConfigDrive['filesystem']
  bytes: number
  uuid: string
}

/** What the step wrote: the result, and the files (for the mount check; never logged: user data can hold secrets). */
export interface WrittenConfigDrive {
  result: ConfigDriveResult
  files: ConfigDriveFile[]
}

export interface ConfigDriveStepOptions {
  force?: 'iso9660' | 'fat'
  uuid?: string
}

/** Whether the filesystem at a partition is labelled config-2 (ISO 9660 volume id or FAT label), as cloud-init looks for it. */
async function isConfigDrive (io: ImageIo, offsetBytes: number, sizeBytes: number, signal: AbortSignal | undefined): Promise<boolean> {
  const read = partitionReader(io, { number: 0, offsetBytes, sizeBytes })
  const label = await readIsoVolumeId(read).catch(() => undefined) ?? await readFatLabel(read, { signal }).catch(() => undefined)
  // A probe that failed on a cancel is not "no label": the install stops.
  signal?.throwIfAborted()
  return label !== undefined && label.trim().toLowerCase() === 'config-2'
}

/** The ConfigDrive as built before the download: its filesystem, its instance id, and the ISO (which does not depend on the partition). */
export interface PreparedConfigDrive {
  filesystem: ConfigDrive['filesystem']
  uuid: string
  /** ISO 9660: the image, as large as its content. FAT fills its partition, so it is built again once the partition is placed. */
  iso: ConfigDrive | undefined
}

/**
 * Builds the ConfigDrive for a disk of `sectorBytes` sectors, before anything is downloaded: content
 * that cannot make a drive (too large for 64 MiB, say) is refused while the disk is untouched and
 * no image byte has been fetched. Any failure: `Could not create configdrive on disk.`
 */
export function prepareConfigDrive (request: InstallRequest, sectorBytes: number, options: ConfigDriveStepOptions = {}): PreparedConfigDrive {
  const filesystem = options.force ?? (sectorBytes <= ISO_LIMIT_SECTOR_BYTES ? 'iso9660' : 'fat')
  const uuid = options.uuid ?? givenUuid(request) ?? crypto.randomUUID()
  const drive = buildConfigDrive(request, { sectorBytes, partitionBytes: CONFIG_DRIVE_BYTES, force: filesystem, uuid })
  return { filesystem, uuid, iso: filesystem === 'iso9660' ? drive : undefined }
}

/** The instance id of a ConfigDrive given whole: `uuid` of its newest meta_data.json, if it says one. */
function givenUuid (request: InstallRequest): string | undefined {
  const metaData = request.givenConfigDrive?.files
    .filter((file) => /^openstack\/[^/]+\/meta_data\.json$/.test(file.path))
    .sort((a, b) => a.path < b.path ? 1 : -1)[0]
  if (metaData === undefined) return undefined
  try {
    const uuid: unknown = (JSON.parse(metaData.data.toString('utf8')) as Record<string, unknown>).uuid
    return typeof uuid === 'string' && uuid !== '' ? uuid : undefined
  } catch {
    return undefined
  }
}

/**
 * Adds the config-2 partition (or reuses one) in the head's table, writes the ConfigDrive filesystem
 * into it, reads it back and compares. Any failure: `Could not create configdrive on disk.` The
 * install runs this on a PlannedDisk in its verify step, so every failure comes before any write.
 */
export async function writeConfigDrive (
  request: InstallRequest, io: ImageIo, options: ConfigDriveStepOptions & { prepared?: PreparedConfigDrive; signal?: AbortSignal } = {},
): Promise<WrittenConfigDrive> {
  try {
    const sectorBytes = io.logicalSectorBytes
    const prepared = options.prepared ?? prepareConfigDrive(request, sectorBytes, options)
    const { filesystem, uuid } = prepared
    // An ISO is as large as its content: the partition must hold at least that. A FAT fills its partition.
    const sized = prepared.iso
    const partition = await addConfigDrivePartition(io, {
      sizeBytes: CONFIG_DRIVE_BYTES,
      minSizeBytes: sized?.image.length ?? 1024 * 1024,
      isConfigDrive: async (offsetBytes, sizeBytes) => await isConfigDrive(io, offsetBytes, sizeBytes, options.signal),
    })
    const drive = sized ?? buildConfigDrive(request, { sectorBytes, partitionBytes: partition.sizeBytes, force: filesystem, uuid })
    if (drive.image.length > partition.sizeBytes) {
      throw new Error(`the ConfigDrive (${drive.image.length} bytes) does not fit partition ${partition.number} (${partition.sizeBytes} bytes)`)
    }
    await io.write(drive.image, partition.offsetBytes)
    const back = await readBytes(io, partition.offsetBytes, drive.image.length)
    if (!back.equals(drive.image)) throw new Error(`the ConfigDrive read back from partition ${partition.number} differs from what was written`)
    return { result: { partition, filesystem: drive.filesystem, bytes: drive.image.length, uuid }, files: drive.files }
  } catch (err) {
    if (isInstallError(err) && err.code === 'CONFIGDRIVE_FAILED') throw err
    if (options.signal?.aborted === true) throw err
    throw errors.configDriveFailed(err)
  }
}
