import type { ByteSource } from '../memory-image.js'
import { parseQcow2Header, type Qcow2Header } from './header.js'
import { readL1Table, validateL2Tables, type Qcow2Geometry, type Qcow2Mapping } from './tables.js'
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
  const geometry = qcow2Geometry(header, source.sizeBytes)
  const slice = new TimeSlice(options.signal)
  const l2TableOffsets = await readL1Table(geometry, source, header.l1TableOffset, slice)
  return qcow2Image(header, source.sizeBytes, await validateL2Tables(geometry, source, l2TableOffsets, slice))
}

/** What the mapping needs of a header checked by parseQcow2Header, for a file of `fileBytes`. */
export function qcow2Geometry (header: Qcow2Header, fileBytes: number): Qcow2Geometry {
  const { version, virtualSizeBytes, clusterBits, clusterBytes, extendedL2 } = header
  return { version, virtualSizeBytes, clusterBits, clusterBytes, extendedL2, fileBytes }
}

/** The image of a checked header and its checked mapping (openQcow2's, or a streamed map's once whole). */
export function qcow2Image (header: Qcow2Header, fileBytes: number, mapping: Qcow2Mapping): Qcow2Image {
  const { compressionType, snapshots, dirty } = header
  return { ...qcow2Geometry(header, fileBytes), compressionType, snapshots, dirty, ...mapping }
}
