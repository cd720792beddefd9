/**
 * The parts of a parallel download between the connections that fetch them and the one feed that
 * takes them: which part a connection fetches next, and the order the parts leave in. A part is
 * held from the moment a connection claims it (its buffer is allocated when its answer starts)
 * until it has gone to the feed; at most `windowParts` are held at once. A connection that would
 * claim past that waits until the oldest part is handed over, so the memory a download holds is
 * bounded by the window, whatever the file's size, and a slow part stalls the others instead of
 * letting them run ahead without limit.
 */
export class PartWindow<Part> {
  /** The first part no connection has claimed yet. */
  private nextToClaim = 0
  /** The first part not handed over yet: every part before it has gone to the feed. */
  private handedOver = 0
  /** Parts that arrived before the ones ahead of them did. */
  private readonly arrived = new Map<number, Part>()
  /** Connections waiting for room in the window. */
  private claimers: Array<() => void> = []
  /** The feed waiting for the next part in order. */
  private taker: (() => void) | undefined
  private closed = false
  /** The most parts held at once (a test checks the bound; the log says it). */
  peakHeld = 0

  constructor (readonly partCount: number, readonly windowParts: number) {
    if (!Number.isSafeInteger(partCount) || partCount < 1) throw new RangeError(`partCount must be a positive integer, got ${partCount}`)
    if (!Number.isSafeInteger(windowParts) || windowParts < 1) throw new RangeError(`windowParts must be a positive integer, got ${windowParts}`)
  }

  /** The next part to fetch, once the window has room for it; undefined when every part is claimed or the window closed. */
  async claim (): Promise<number | undefined> {
    while (!this.closed && this.nextToClaim < this.partCount && this.nextToClaim - this.handedOver >= this.windowParts) {
      await new Promise<void>((resolve) => { this.claimers.push(resolve) })
    }
    if (this.closed || this.nextToClaim >= this.partCount) return undefined
    const index = this.nextToClaim++
    this.peakHeld = Math.max(this.peakHeld, this.nextToClaim - this.handedOver)
    return index
  }

  /** Part `index` (claimed) arrived whole. */
  fill (index: number, data: Part): void {
    if (index < this.handedOver || index >= this.nextToClaim || this.arrived.has(index)) throw new RangeError(`part ${index} was not awaited`)
    this.arrived.set(index, data)
    if (index === this.handedOver) this.wake('taker')
  }

  /** The next part in order, once it arrived; undefined after the last part, or once the window closed. */
  async next (): Promise<Part | undefined> {
    for (;;) {
      if (this.closed || this.handedOver >= this.partCount) return undefined
      const data = this.arrived.get(this.handedOver)
      if (data !== undefined) return data
      await new Promise<void>((resolve) => { this.taker = resolve })
    }
  }

  /** The part next() gave went to the feed: its room in the window is free. */
  handOver (): void {
    this.arrived.delete(this.handedOver)
    this.handedOver++
    this.wake('claimers')
  }

  /** Parts handed over so far. */
  get handedOverParts (): number {
    return this.handedOver
  }

  /** Nothing more will be claimed or taken (a failure, an abort): every waiter gets undefined. */
  close (): void {
    this.closed = true
    this.arrived.clear()
    this.wake('claimers')
    this.wake('taker')
  }

  private wake (who: 'claimers' | 'taker'): void {
    if (who === 'taker') {
      const taker = this.taker
      this.taker = undefined
      taker?.()
      return
    }
    const claimers = this.claimers
    this.claimers = []
    for (const resolve of claimers) resolve()
  }
}
