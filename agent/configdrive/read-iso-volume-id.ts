import { ISO_SECTOR_BYTES, PVD_LBA } from './build-iso9660.js'

/**
 * The volume identifier of an ISO 9660 filesystem (its PVD's, which blkid reports as LABEL when the
 * Joliet copy agrees), trimmed of its padding; undefined when sector 16 holds no primary volume
 * descriptor. `read` reads at byte offsets from the start of the filesystem.
 */
export async function readIsoVolumeId (read: (offset: number, length: number) => Promise<Buffer>): Promise<string | undefined> {
  const pvd = await read(PVD_LBA * ISO_SECTOR_BYTES, ISO_SECTOR_BYTES)
  if (pvd.length < ISO_SECTOR_BYTES) return undefined
  // ECMA-119 8.4.1-8.4.3: type 1 (primary), standard identifier "CD001", version 1.
  if (pvd[0] !== 1 || pvd.toString('latin1', 1, 6) !== 'CD001' || pvd[6] !== 1) return undefined
  const id = pvd.toString('latin1', 40, 72).replace(/[ \0]+$/, '') // 8.4.6: volume identifier
  return id === '' ? undefined : id
}
