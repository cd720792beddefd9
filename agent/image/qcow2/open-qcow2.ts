import type { ByteSource } from '../memory-image.js'
import { parseQcow2Header } from './header.js'
import { readL1Table, validateL2Tables, type Qcow2Mapping } from './tables.js'
import { TimeSlice } from '../../time-slice.js'

/** A qcow2 image checked by openQcow2, ready for writeQcow2. */
export interface Qcow2Image extends Qcow2Mapping {
  readonly version: 2 | 3
  /** The guest disk's size: what gets installed. */
  readonly virtualSizeBytes: number
  readonly clusterBits: number
  readonly clusterBytes: number
  readonly compressionType: 'deflate' | 'zstd'
  readonly extendedL2: boolean
  /** Internal snapshots in the file; only the active state is installed. */
  readonly snapshots: number
  /** The dirty bit: refcounts may be stale, the mapping is still valid. */
  readonly dirty: boolean
  /** The size of the qcow2 file the image was opened from. */
  readonly fileBytes: number
}

/**
 * Parses and validates everything that can be checked before writing: header, extensions, feature
 * bits, L1 table bounds, and every L2 table's entries (bounds against the file and the virtual
 * size). Throws InstallError (QCOW2_UNSUPPORTED / QCOW2_DAMAGED), the signal's reason once
 * aborted. The work is bounded by the file's size, whatever the header claims (at most one step per
 * 8 bytes of it), and goes through a TimeSlice: the event loop gets its turns meanwhile.
 */
export async function openQcow2 (source: ByteSource, options: { signal?: AbortSignal } = {}): Promise<Qcow2Image> {
  const header = parseQcow2Header(source)
  const geometry = {
    version: header.version,
    virtualSizeBytes: header.virtualSizeBytes,
    clusterBits: header.clusterBits,
    clusterBytes: header.clusterBytes,
    extendedL2: header.extendedL2,
    fileBytes: source.sizeBytes,
  }
  const slice = new TimeSlice(options.signal)
  const l2TableOffsets = await readL1Table(geometry, source, header.l1TableOffset, slice)
  const mapping = await validateL2Tables(geometry, source, l2TableOffsets, slice)
  return {
    version: header.version,
    virtualSizeBytes: header.virtualSizeBytes,
    clusterBits: header.clusterBits,
    clusterBytes: header.clusterBytes,
    compressionType: header.compressionType,
    extendedL2: header.extendedL2,
    snapshots: header.snapshots,
    dirty: header.dirty,
    fileBytes: source.sizeBytes,
    ...mapping,
  }
}
