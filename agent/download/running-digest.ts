import { createHash } from 'node:crypto'
import { Worker } from 'node:worker_threads'

export type DigestType = 'md5' | 'sha1' | 'sha256' | 'sha512'

/** Bytes that lie in shared memory. */
export interface SharedSpan {
  buffer: SharedArrayBuffer
  offset: number
  length: number
  /** No later span lies in this buffer: a digest on another thread lets go of it once hashed. */
  last?: boolean
}

/**
 * A digest computed over bytes as they arrive. `update` takes the bytes in order (it may ask the
 * caller to wait: backpressure); `digestHex` ends it. `dispose` drops it without a result.
 * `updateShared` takes the next bytes where they lie in shared memory, without copying them: it
 * resolves once they are hashed, and the caller must not change them before.
 */
export interface RunningDigest {
  update (chunk: Uint8Array): void | Promise<void>
  updateShared (span: SharedSpan): Promise<void>
  digestHex (): Promise<string>
  dispose (): void
}

/** On the calling thread. */
export function inlineDigest (type: DigestType): RunningDigest {
  const hash = createHash(type)
  return {
    update: (chunk) => { hash.update(chunk) },
    updateShared: async (span) => { hash.update(new Uint8Array(span.buffer, span.offset, span.length)) },
    digestHex: async () => hash.digest('hex'),
    dispose: () => {},
  }
}

const SEGMENT_BYTES = 2 * 1024 * 1024 // 2 MiB handed to the worker at a time
const SEGMENTS = 6 // 12 MiB of shared memory in all

// The worker hashes the spans it is sent, in the order they are posted (messages keep their
// order), answering each: a segment of its own ring (bytes copied there by update()) or a span of
// a shared buffer registered once by its id (updateShared()). Plain JS, evaluated: nothing to find
// on disk, so it works the same from agent/, dist/ and the rescue image's bundle.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const hash = require('node:crypto').createHash(workerData.type)
const buffers = new Map()
parentPort.on('message', (m) => {
  if (m.final) { parentPort.postMessage({ hex: hash.digest('hex') }); return }
  if (m.register !== undefined) { buffers.set(m.register, new Uint8Array(m.buffer)); return }
  hash.update(buffers.get(m.buffer).subarray(m.offset, m.offset + m.length))
  if (m.last) buffers.delete(m.buffer)
  parentPort.postMessage({ segment: m.segment })
})
`

const RING = 0 // the id of the ring's buffer in the worker

/**
 * On a worker thread, so that hashing (about 1 GB/s for sha512 on one core) runs beside the
 * download and the writes instead of between them. Bytes already in shared memory (the download's
 * sinks keep them there) are hashed where they lie; others are copied into one of 6 shared 2 MiB
 * segments of a ring made on first use, a full segment goes to the worker, and `update` waits only
 * when all 6 are out.
 */
export class WorkerDigest implements RunningDigest {
  private readonly worker: Worker
  private ring: Uint8Array | undefined
  private readonly free: number[] = []
  /** The segment being filled; undefined when the last one was posted and no other is taken yet. */
  private segment: number | undefined = 0
  private filled = 0
  /** Shared buffers the worker knows, by id (the ring is 0). */
  private readonly registered = new WeakMap<SharedArrayBuffer, number>()
  private nextBufferId = RING + 1
  /** updateShared() calls the worker has not answered yet, oldest first. */
  private readonly sharedPending: Array<{ resolve: () => void; reject: (err: Error) => void }> = []
  private waiting: { resolve: () => void; reject: (err: Error) => void } | undefined
  private result: { resolve: (hex: string) => void; reject: (err: Error) => void } | undefined
  private failure: Error | undefined

  constructor (type: DigestType) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { type } })
    this.worker.on('message', (message: { segment?: number | null; hex?: string }) => {
      if (message.hex !== undefined) {
        this.result?.resolve(message.hex)
        return
      }
      if (message.segment === null || message.segment === undefined) {
        this.sharedPending.shift()?.resolve()
        return
      }
      this.free.push(message.segment)
      const waiting = this.waiting
      this.waiting = undefined
      waiting?.resolve()
    })
    this.worker.on('error', (err) => this.fail(err))
    this.worker.on('exit', (code) => { if (this.result !== undefined || this.waiting !== undefined || this.sharedPending.length > 0) this.fail(new Error(`digest worker exited with code ${code}`)) })
  }

  private fail (err: Error): void {
    this.failure ??= err
    this.waiting?.reject(err)
    this.result?.reject(err)
    for (const pending of this.sharedPending.splice(0)) pending.reject(err)
    this.waiting = undefined
    this.result = undefined
  }

  /** The ring, made and registered with the worker on first use. */
  private ringView (): Uint8Array {
    if (this.ring === undefined) {
      const buffer = new SharedArrayBuffer(SEGMENT_BYTES * SEGMENTS)
      this.worker.postMessage({ register: RING, buffer })
      this.ring = new Uint8Array(buffer)
      for (let i = 1; i < SEGMENTS; i++) this.free.push(i)
    }
    return this.ring
  }

  async updateShared (span: SharedSpan): Promise<void> {
    if (this.failure !== undefined) throw this.failure
    // Bytes copied into the ring before these come first. Nothing here may wait before the
    // span is posted: calls not awaited one by one must still be hashed in the order made.
    if (this.filled > 0) this.post()
    let id = this.registered.get(span.buffer)
    if (id === undefined) {
      id = this.nextBufferId++
      this.registered.set(span.buffer, id)
      this.worker.postMessage({ register: id, buffer: span.buffer })
    }
    const hashed = new Promise<void>((resolve, reject) => { this.sharedPending.push({ resolve, reject }) })
    this.worker.postMessage({ buffer: id, offset: span.offset, length: span.length, segment: null, last: span.last === true })
    if (span.last === true) this.registered.delete(span.buffer)
    await hashed
  }

  update (chunk: Uint8Array): void | Promise<void> {
    const ring = this.ringView()
    let from = 0
    while (from < chunk.length) {
      if (this.failure !== undefined) throw this.failure
      if (this.segment === undefined) {
        this.segment = this.free.shift()
        if (this.segment === undefined) return this.waitForSegment().then(async () => await this.update(chunk.subarray(from)))
      }
      const n = Math.min(SEGMENT_BYTES - this.filled, chunk.length - from)
      ring.set(chunk.subarray(from, from + n), this.segment * SEGMENT_BYTES + this.filled)
      this.filled += n
      from += n
      if (this.filled === SEGMENT_BYTES) this.post()
    }
  }

  /** The filled part of the current segment to the worker; the next update takes another. */
  private post (): void {
    if (this.segment === undefined) return
    this.worker.postMessage({ buffer: RING, segment: this.segment, offset: this.segment * SEGMENT_BYTES, length: this.filled })
    this.segment = undefined
    this.filled = 0
  }

  private async waitForSegment (): Promise<void> {
    while (this.free.length === 0) {
      await new Promise<void>((resolve, reject) => { this.waiting = { resolve, reject } })
    }
    this.segment = this.free.shift()
  }

  async digestHex (): Promise<string> {
    if (this.failure !== undefined) throw this.failure
    if (this.filled > 0) this.post()
    const hex = new Promise<string>((resolve, reject) => { this.result = { resolve, reject } })
    this.worker.postMessage({ final: true })
    try {
      return await hex
    } finally {
      this.result = undefined
      this.dispose()
    }
  }

  dispose (): void {
    void this.worker.terminate()
  }
}
