/**
 * FAT directory entry names: 8.3 short names and VFAT long-name slots, shared by the writer and the
 * reader. Microsoft's "FAT: General Overview of On-Disk Format" (FAT spec) section 7, and Linux
 * fs/fat/namei_vfat.c (`vfat_build_slots`, `vfat_create_shortname`).
 */

export const DIR_ENTRY_BYTES = 32 // FAT spec 6: one directory entry
export const ATTR_VOLUME_ID = 0x08
export const ATTR_DIRECTORY = 0x10
export const ATTR_ARCHIVE = 0x20
export const ATTR_LONG_NAME = 0x0f // FAT spec 7: READ_ONLY|HIDDEN|SYSTEM|VOLUME_ID
export const LFN_CHARS_PER_SLOT = 13 // FAT spec 7: 5 + 6 + 2 UCS-2 characters
export const LFN_LAST_SLOT = 0x40 // FAT spec 7: LDIR_Ord flag of the last (physically first) slot
export const ENTRY_FREE = 0xe5 // FAT spec 6.1: DIR_Name[0] of a deleted entry
export const ENTRY_END = 0x00 // FAT spec 6.1: DIR_Name[0]: this and all later entries are free
export const ENTRY_KANJI_E5 = 0x05 // FAT spec 6.1: DIR_Name[0] 0x05 stands for a real 0xE5

/** Byte offsets in a long-name slot of the 13 characters it holds (FAT spec 7, LDIR_Name1/2/3). */
export const LFN_CHAR_OFFSETS = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30] as const

/** Characters allowed in a short name besides A-Z and 0-9 (FAT spec 6.1). */
const SHORT_EXTRA = "!#$%&'()-@^_`{}~"

function shortChar (c: string): string | undefined {
  const upper = c.toUpperCase()
  if (/^[A-Z0-9]$/.test(upper) || SHORT_EXTRA.includes(c)) return upper
  return undefined
}

/**
 * The 11-byte short name for `longName`, unique among `used` (upper-case 11-character strings),
 * which it joins. Names that fit 8.3 once upper-cased keep their spelling; others get a basis name
 * and a numeric tail `~N` as Windows makes them (FAT spec 7.4).
 */
export function makeShortName (longName: string, used: Set<string>): string {
  let lossy = false
  // Leading dots and every space are dropped.
  const stripped = longName.replace(/^\.+/, '').replaceAll(' ', '')
  if (stripped !== longName) lossy = true
  const dot = stripped.lastIndexOf('.')
  const rawBase = dot >= 0 ? stripped.slice(0, dot) : stripped
  const rawExt = dot >= 0 ? stripped.slice(dot + 1) : ''
  const map = (text: string): string => [...text].map((c) => {
    if (c === '.') { lossy = true; return '' }
    const mapped = shortChar(c)
    if (mapped === undefined) { lossy = true; return '_' }
    return mapped
  }).join('')
  let base = map(rawBase)
  let ext = map(rawExt)
  if (base.length > 8 || ext.length > 3) lossy = true
  base = base.slice(0, 8)
  ext = ext.slice(0, 3)
  if (base.length === 0) { base = '_'; lossy = true }

  const spell = (b: string): string => b.padEnd(8, ' ') + ext.padEnd(3, ' ')
  if (!lossy && !used.has(spell(base))) {
    used.add(spell(base))
    return spell(base)
  }
  for (let n = 1; n < 1_000_000; n++) {
    const tail = `~${n}`
    const candidate = spell(base.slice(0, 8 - tail.length) + tail)
    if (!used.has(candidate)) {
      used.add(candidate)
      return candidate
    }
  }
  throw new RangeError(`no free FAT short name for ${JSON.stringify(longName)}`)
}

/** FAT spec 7.2: the checksum of the 11-byte short name that every long-name slot carries. */
export function shortNameChecksum (shortName: Buffer): number {
  let sum = 0
  for (let i = 0; i < 11; i++) sum = ((((sum & 1) << 7) | (sum >> 1)) + (shortName[i] ?? 0)) & 0xff
  return sum
}

/**
 * The long-name slots for `name`, in on-disk order (highest ordinal first), each 32 bytes. The name
 * ends with U+0000 unless it fills the last slot, then U+FFFF padding (FAT spec 7).
 */
export function longNameSlots (name: string, shortName: Buffer): Buffer[] {
  const units = [...Array(name.length).keys()].map((i) => name.charCodeAt(i))
  const count = Math.ceil(units.length / LFN_CHARS_PER_SLOT)
  if (units.length > 255) throw new RangeError(`FAT long name longer than 255 characters: ${JSON.stringify(name)}`)
  const checksum = shortNameChecksum(shortName)
  const slots: Buffer[] = []
  for (let ordinal = count; ordinal >= 1; ordinal--) {
    const slot = Buffer.alloc(DIR_ENTRY_BYTES)
    slot[0] = ordinal | (ordinal === count ? LFN_LAST_SLOT : 0) // LDIR_Ord
    slot[11] = ATTR_LONG_NAME // LDIR_Attr
    slot[12] = 0 // LDIR_Type
    slot[13] = checksum // LDIR_Chksum
    slot.writeUInt16LE(0, 26) // LDIR_FstClusLO: always 0
    for (let i = 0; i < LFN_CHARS_PER_SLOT; i++) {
      const at = (ordinal - 1) * LFN_CHARS_PER_SLOT + i
      const unit = at < units.length ? units[at] ?? 0 : at === units.length ? 0x0000 : 0xffff
      slot.writeUInt16LE(unit, LFN_CHAR_OFFSETS[i] ?? 0)
    }
    slots.push(slot)
  }
  return slots
}
