/** A fixed default for every date the writers record, so two builds of the same files are equal. */
export const DEFAULT_TIMESTAMP = new Date(Date.UTC(2000, 0, 1, 0, 0, 0))

/** Dates both writers can record: FAT dates run from 1980 to 2107 (7-bit year since 1980). */
export function checkTimestamp (date: Date): Date {
  const time = date.getTime()
  if (Number.isNaN(time)) throw new RangeError('ConfigDrive timestamp is not a valid date')
  const year = date.getUTCFullYear()
  if (year < 1980 || year > 2107) throw new RangeError(`ConfigDrive timestamp must be in 1980-2107, got ${date.toISOString()}`)
  return date
}
