/**
 * What an image's first bytes look like, for the message that refuses an image without a partition
 * table: a bare filesystem, an ISO, an HTML error page, a compressed file. Magic numbers as the
 * formats (and libblkid) define them; the first match wins. A gzip, zstd or xz file is decoded
 * before its tables are looked for (stream-decoder), so these are the bytes decoded: `xz data` is
 * then a file compressed twice; gzip's two bytes alone also name a gzip file whose method is not
 * deflate, which is not decoded.
 */

interface Magic {
  offset: number
  bytes: Buffer
  what: string
}

const magic = (offset: number, bytes: string | number[], what: string): Magic =>
  ({ offset, bytes: typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : Buffer.from(bytes), what })

const MAGICS: readonly Magic[] = [
  magic(0, [0x1f, 0x8b], 'gzip data'), // RFC 1952 ID1 ID2
  magic(0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz data'), // xz file format 2.1.1.1
  magic(0, [0x28, 0xb5, 0x2f, 0xfd], 'zstd data'), // RFC 8878 3.1.1 magic 0xFD2FB528 LE
  magic(0, 'BZh', 'bzip2 data'),
  magic(0, [0x04, 0x22, 0x4d, 0x18], 'lz4 data'),
  magic(0, 'PK\x03\x04', 'a zip archive'),
  magic(257, 'ustar', 'a tar archive'),
  magic(0, 'QFI\xfb', 'a qcow2 image'),
  magic(0, 'KDMV', 'a VMDK image'),
  magic(0, 'vhdxfile', 'a VHDX image'),
  magic(0, 'conectix', 'a VHD image'),
  magic(64, [0x7f, 0x10, 0xda, 0xbe], 'a VDI image'), // VirtualBox: 0xBEDA107F LE at 64
  magic(0, 'LUKS\xba\xbe', 'a LUKS volume'),
  magic(32769, 'CD001', 'an ISO 9660 filesystem'), // ECMA-119 8.4.2: volume descriptor at 16 × 2048, after its type byte
  magic(1080, [0x53, 0xef], 'an ext2/ext3/ext4 filesystem'), // s_magic 0xEF53 at 1024 + 56
  magic(0, 'XFSB', 'an XFS filesystem'),
  magic(0x10040, '_BHRfS_M', 'a Btrfs filesystem'),
  magic(3, 'NTFS    ', 'an NTFS filesystem'),
  magic(82, 'FAT32   ', 'a FAT filesystem'),
  magic(54, 'FAT1', 'a FAT filesystem'),
  magic(4086, 'SWAPSPACE2', 'a Linux swap area'),
  magic(536, 'LVM2 001', 'an LVM physical volume'),
]

function matches (bytes: Buffer, m: Magic): boolean {
  return bytes.length >= m.offset + m.bytes.length && bytes.subarray(m.offset, m.offset + m.bytes.length).equals(m.bytes)
}

/** Printable ASCII and common whitespace, as `file` calls something text. */
function looksLikeText (bytes: Buffer): boolean {
  const sample = bytes.subarray(0, 4096)
  if (sample.length === 0) return false
  for (const b of sample) {
    if (b === 0) return false
    if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) return false
  }
  return true
}

/** A short phrase naming what `bytes` (an image's first bytes, up to a MiB) look like. */
export function describeContent (bytes: Buffer): string {
  if (bytes.length === 0) return 'nothing (0 bytes)'
  for (const m of MAGICS) if (matches(bytes, m)) return m.what
  if (bytes.every((b) => b === 0)) return 'zeros'
  if (looksLikeText(bytes)) {
    const start = bytes.subarray(0, 256).toString('latin1').trimStart().toLowerCase()
    return start.startsWith('<!doctype html') || start.startsWith('<html') ? 'text (an HTML page)' : 'text'
  }
  return 'unrecognised data'
}
