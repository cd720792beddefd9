/**
 * CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78) as the Linux kernel's
 * `crc32c(seed, data)` computes it: the register starts at `seed` and is returned as is, without
 * the final inversion, so that ext4's checksums (`ext4_chksum`) chain one call into the next.
 * The standard CRC-32C of `data` is `~crc32c(0xffffffff, data) >>> 0`.
 */

const TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

export function crc32c (seed: number, data: Uint8Array): number {
  let crc = seed >>> 0
  for (let i = 0; i < data.length; i++) crc = (TABLE[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8)
  return crc >>> 0
}
