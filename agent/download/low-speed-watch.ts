/**
 * The low-speed limit, as curl's `--speed-limit`/`--speed-time`: an attempt whose body brings
 * less than `limitBytesPerSecond` on average over `windowMs` fails (and is retried, like a stall).
 * The idle timeout alone never fires on a server that sends a byte every second.
 *
 * Only time spent waiting on the network counts: while the sink takes a chunk (a slow disk, a
 * full memory budget being switched to streaming) the clock stops, so a slow sink is never
 * mistaken for a slow server. Checked as each chunk arrives; a body that brings no chunk at all
 * is the idle timeout's. Pure: the caller gives the times.
 */

/** Samples kept per window: the window slides in steps of windowMs / this. */
const SAMPLES_PER_WINDOW = 20

export interface LowSpeedWatchOptions {
  limitBytesPerSecond: number
  windowMs: number
  /** When the body starts (the first wait on the network). */
  nowMs: number
}

export class LowSpeedWatch {
  private readonly limitBytesPerSecond: number
  private readonly windowMs: number
  /** Time spent waiting on the network so far, and the bytes it brought. */
  private networkMs = 0
  private bytes = 0
  private waitingSinceMs: number
  /** (networkMs, bytes) at most one per step; the first is the base of the current window. */
  private readonly samples: Array<{ atMs: number; bytes: number }> = [{ atMs: 0, bytes: 0 }]

  constructor (options: LowSpeedWatchOptions) {
    this.limitBytesPerSecond = options.limitBytesPerSecond
    this.windowMs = options.windowMs
    this.waitingSinceMs = options.nowMs
  }

  /** The sink took the last chunk: waiting on the network again. */
  waiting (nowMs: number): void {
    this.waitingSinceMs = nowMs
  }

  /** A chunk arrived. Returns the average rate over the last window when it is below the limit, else undefined. */
  arrived (nowMs: number, bytes: number): number | undefined {
    this.networkMs += Math.max(0, nowMs - this.waitingSinceMs)
    this.waitingSinceMs = nowMs
    this.bytes += bytes
    const last = this.samples[this.samples.length - 1]
    if (last !== undefined && this.networkMs - last.atMs >= this.windowMs / SAMPLES_PER_WINDOW) {
      this.samples.push({ atMs: this.networkMs, bytes: this.bytes })
    }
    // The base: the latest sample at least a window old.
    while (this.samples.length > 1 && this.networkMs - (this.samples[1]?.atMs ?? Infinity) >= this.windowMs) this.samples.shift()
    const base = this.samples[0]
    if (base === undefined) return undefined
    const spanMs = this.networkMs - base.atMs
    if (spanMs < this.windowMs) return undefined
    const bytesPerSecond = (this.bytes - base.bytes) * 1000 / spanMs
    return bytesPerSecond < this.limitBytesPerSecond ? bytesPerSecond : undefined
  }
}
