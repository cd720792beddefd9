import { performance } from 'node:perf_hooks'
import { setImmediate } from 'node:timers/promises'

/** How long a loop over image data may keep the event loop before it gives it a turn. */
export const TIME_SLICE_MS = 10

/**
 * Cooperative pacing for loops over untrusted image data (qcow2 tables, FAT chains): each step
 * calls `next()`, which looks at the install's AbortSignal every time and, once TIME_SLICE_MS have
 * passed since the last turn, awaits setImmediate so that timers, sockets (`/health`,
 * `/install/cancel`) and signal handlers (SIGINT, SIGTERM) run. Without it a hostile image can keep
 * a single synchronous run going for hours and the agent can be neither asked nor stopped.
 */
export class TimeSlice {
  private since = performance.now()

  constructor (private readonly signal?: AbortSignal, private readonly sliceMs = TIME_SLICE_MS) {}

  /** Throws the signal's reason once aborted; gives the event loop a turn when the slice is used up. */
  async next (): Promise<void> {
    this.signal?.throwIfAborted()
    if (performance.now() - this.since < this.sliceMs) return
    await setImmediate()
    this.signal?.throwIfAborted()
    this.since = performance.now()
  }
}
