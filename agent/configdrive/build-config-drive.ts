import { errors } from '../errors/install-error.js'
import { buildFat, MAX_FAT_BYTES } from './build-fat.js'
import { buildIso9660, ISO_SECTOR_BYTES } from './build-iso9660.js'
import { configDriveFiles, type ConfigDriveFile, type ConfigDriveRequest } from './config-drive-files.js'

export type ConfigDriveFilesystem = 'iso9660' | 'fat'

export interface BuildConfigDriveOptions {
  /** The disk's logical sector size in bytes: 512, 1024, 2048 or 4096. */
  sectorBytes: number
  /** Size of the partition the drive goes into, in bytes; the FAT fills it up to 64 MiB. */
  partitionBytes: number
  /** Overrides the choice made from the sector size. */
  force?: ConfigDriveFilesystem
  /** The instance id (meta_data.json `uuid`); random when absent. */
  uuid?: string
  /** OpenStack network_data.json content, written when given. */
  networkData?: unknown
  /** Every date in the filesystem; a fixed one by default. */
  timestamp?: Date
}

export interface ConfigDrive {
  filesystem: ConfigDriveFilesystem
  /** The filesystem image, to be written at the partition's first byte. */
  image: Buffer
  files: ConfigDriveFile[]
}

const MAX_CONFIG_DRIVE_BYTES = 64 * 1024 * 1024 // 64 MiB: Ironic's MAX_CONFIG_DRIVE_SIZE_MB

/**
 * Makes the ConfigDrive filesystem for a disk: ISO 9660 (what OpenStack writes) when the disk's
 * logical sectors are at most 2048 bytes, else FAT with the disk's sector size, because Linux
 * refuses to mount ISO 9660 from a device whose logical blocks are larger than 2048 bytes
 * (fs/isofs/inode.c isofs_fill_super); `force` picks either. Any failure, content that does not
 * fit the partition included, is `Could not create configdrive on disk.` A ConfigDrive given whole
 * (`request.givenConfigDrive`) keeps its files and, in ISO 9660, its image.
 */
export function buildConfigDrive (request: ConfigDriveRequest, options: BuildConfigDriveOptions): ConfigDrive {
  try {
    const { sectorBytes, partitionBytes } = options
    if (![512, 1024, 2048, 4096].includes(sectorBytes)) throw new RangeError(`logical sector size must be 512, 1024, 2048 or 4096 bytes, got ${sectorBytes}`)
    if (!Number.isSafeInteger(partitionBytes) || partitionBytes <= 0) {
      throw new RangeError(`partition size must be a positive number of bytes, got ${partitionBytes}`)
    }
    const given = request.givenConfigDrive
    const files = given?.files ?? configDriveFiles(request, {
      ...(options.uuid === undefined ? {} : { uuid: options.uuid }),
      ...(options.networkData === undefined ? {} : { networkData: options.networkData }),
    })
    const filesystem = options.force ?? (sectorBytes <= ISO_SECTOR_BYTES ? 'iso9660' : 'fat')
    const timestamp = options.timestamp === undefined ? {} : { timestamp: options.timestamp }
    let image: Buffer
    if (filesystem === 'iso9660') {
      // A given ISO (Ironic's) goes on the disk as it came, as ironic-python-agent writes it.
      image = given?.iso ?? buildIso9660(files, timestamp)
      const limit = Math.min(partitionBytes, MAX_CONFIG_DRIVE_BYTES)
      if (image.length > limit) throw new RangeError(`ISO 9660 ConfigDrive is ${image.length} bytes, the partition holds ${limit}`)
    } else {
      const sizeBytes = Math.floor(Math.min(partitionBytes, MAX_FAT_BYTES) / sectorBytes) * sectorBytes
      image = buildFat(files, { sectorBytes, sizeBytes, ...timestamp })
    }
    return { filesystem, image, files }
  } catch (err) {
    throw errors.configDriveFailed(err)
  }
}
