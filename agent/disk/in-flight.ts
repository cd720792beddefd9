/**
 * Runs jobs (writes, mostly) with at most `max` under way, so that they overlap with each other and
 * with whatever produces them, in bounded memory. The first failure stops new jobs and is rethrown
 * by the next `add` and by `drain`.
 */
export class InFlight {
  private readonly running = new Set<Promise<void>>()
  private failed = false
  private failure: unknown

  constructor (private readonly max: number) {}

  /** Starts `job` once fewer than `max` run (awaited: backpressure). */
  async add (job: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.max) await Promise.race(this.running)
    if (this.failed) throw this.failure
    const tracked: Promise<void> = job()
      .catch((err: unknown) => {
        if (!this.failed) {
          this.failed = true
          this.failure = err
        }
      })
      .finally(() => { this.running.delete(tracked) })
    this.running.add(tracked)
  }

  /** Waits for every job; throws the first failure. */
  async drain (): Promise<void> {
    await Promise.all(this.running)
    if (this.failed) throw this.failure
  }

  /** Waits for what is under way, ignoring failures (after an error or an abort elsewhere). */
  async settle (): Promise<void> {
    await Promise.allSettled(this.running)
  }
}
