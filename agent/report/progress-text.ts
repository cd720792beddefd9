/** Text forms of progress for the CLI: pure functions, no I/O. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

export function formatBytes (bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit] ?? ''}`
}

export function formatDuration (seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--'
  const s = Math.round(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

export interface ProgressLine {
  step: string
  bytes: number
  totalBytes: number | undefined
  bytesPerSecond: number
}

/** `download [#######.............]  35%  700.0 MiB / 2.00 GiB  310.2 MiB/s  ETA 4s` (bar only when `width` > 0). */
export function formatProgress (p: ProgressLine, width = 0): string {
  const parts = [p.step.padEnd(8)]
  if (p.totalBytes !== undefined && p.totalBytes > 0) {
    const ratio = Math.min(1, p.bytes / p.totalBytes)
    if (width > 0) {
      const filled = Math.round(ratio * width)
      parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`)
    }
    parts.push(`${String(Math.floor(ratio * 100)).padStart(3)}%`, `${formatBytes(p.bytes)} / ${formatBytes(p.totalBytes)}`)
  } else {
    parts.push(formatBytes(p.bytes))
  }
  if (p.bytesPerSecond > 0) {
    parts.push(`${formatBytes(p.bytesPerSecond)}/s`)
    if (p.totalBytes !== undefined && p.totalBytes > p.bytes) parts.push(`ETA ${formatDuration((p.totalBytes - p.bytes) / p.bytesPerSecond)}`)
  }
  return parts.join('  ')
}

/** Parses `--memory-limit` style sizes: `1073741824`, `512MiB`, `4G` (IEC multiples either way). */
export function parseByteSize (text: string): number | undefined {
  const match = /^\s*(\d+)\s*(k|ki|kib|m|mi|mib|g|gi|gib|t|ti|tib)?\s*b?\s*$/i.exec(text)
  if (match === null) return undefined
  const exponent = { k: 1, m: 2, g: 3, t: 4 }[(match[2] ?? '').charAt(0).toLowerCase()] ?? 0
  const value = Number(match[1]) * 1024 ** exponent
  return Number.isSafeInteger(value) ? value : undefined
}
