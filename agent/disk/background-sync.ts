/** How much may be written before a background fdatasync is started. */
export const SYNC_EVERY_BYTES = 256 * 1024 * 1024 // 256 MiB

/**
 * Starts an fdatasync in the background every SYNC_EVERY_BYTES written, at most one at a time, so
 * the flush to the device overlaps with the download and the writes instead of all of it waiting
 * for the final sync (the kernel's own writeback starts late on a machine with much RAM, and in
 * a rescue RAM environment dirty pages are memory the image budget needs). Errors are kept and
 * thrown by `settle()`; the final, awaited sync stays the caller's.
 */
export class BackgroundSync {
  private sinceSync = 0
  private running: Promise<void> | undefined
  private failure: unknown

  constructor (private readonly disk: { sync (): Promise<void> }, private readonly everyBytes = SYNC_EVERY_BYTES) {}

  /** Counts `bytes` as written; starts a sync when enough has accumulated and none is running. */
  wrote (bytes: number): void {
    this.sinceSync += bytes
    if (this.sinceSync < this.everyBytes || this.running !== undefined) return
    this.sinceSync = 0
    this.running = this.disk.sync().then(
      () => { this.running = undefined },
      (err: unknown) => { this.failure ??= err; this.running = undefined },
    )
  }

  /** Waits for a sync under way; throws the first failure of any. */
  async settle (): Promise<void> {
    await this.running
    if (this.failure !== undefined) throw this.failure
  }
}
