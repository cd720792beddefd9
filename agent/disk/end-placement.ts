/** Where a new partition goes at the end of the free space: shared by the GPT and MBR code. */

export const MIB = 1024 * 1024
/** Ironic's MAX_CONFIG_DRIVE_SIZE_MB: the config drive partition takes at most the last 64 MiB. */
export const CONFIG_DRIVE_MAX_BYTES = 64 * MIB

export interface Placement {
  startLba: number
  sizeLba: number
}

function alignUp (value: number, step: number): number {
  return Math.ceil(value / step) * step
}

/**
 * The last `maxBytes` of the free run [freeStartLba, freeEndLba), its start aligned up to 1 MiB
 * (so the partition lies wholly inside that window), or undefined when less than `minBytes` fits.
 */
export function placeAtEnd (options: {
  freeStartLba: number
  freeEndLba: number
  sectorBytes: number
  maxBytes: number
  minBytes: number
}): Placement | undefined {
  const { freeStartLba, freeEndLba, sectorBytes, maxBytes, minBytes } = options
  const step = Math.max(1, MIB / sectorBytes) // 2048 sectors of 512 B, 256 of 4 KiB
  if (freeEndLba <= freeStartLba) return undefined
  const startLba = Math.max(alignUp(freeEndLba - Math.floor(maxBytes / sectorBytes), step), alignUp(freeStartLba, step))
  if (startLba >= freeEndLba) return undefined
  const sizeLba = freeEndLba - startLba
  if (sizeLba * sectorBytes < minBytes) return undefined
  return { startLba, sizeLba }
}
