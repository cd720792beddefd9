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
 * A digest computed over bytes as they arrive, in order: `updateShared` takes the next bytes where
 * they lie in shared memory, without copying them, and resolves once they are hashed (the caller
 * must not change them before); `digestHex` ends it; `dispose` drops it without a result.
 */
export interface RunningDigest {
  updateShared (span: SharedSpan): Promise<void>
  digestHex (): Promise<string>
  dispose (): void
}

/** A digest on the calling thread, which also takes plain chunks (for sinks that keep no shared memory). */
export interface InlineDigest extends RunningDigest {
  /** A function property, not a method: it uses no `this`, and is handed on alone (a download's chunk hasher). */
  readonly update: (chunk: Uint8Array) => void
}

export function inlineDigest (type: DigestType): InlineDigest {
  const hash = createHash(type)
  return {
    update: (chunk) => { hash.update(chunk) },
    updateShared: async (span) => { hash.update(new Uint8Array(span.buffer, span.offset, span.length)) },
    digestHex: async () => hash.digest('hex'),
    dispose: () => {},
  }
}

// The worker hashes the spans it is sent, in the order they are posted (messages keep their
// order), answering each; a shared buffer is registered once by its id. Plain JS, evaluated:
// nothing to find on disk, so it works the same from agent/, dist/ and the rescue image's bundle.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const hash = require('node:crypto').createHash(workerData.type)
const buffers = new Map()
parentPort.on('message', (m) => {
  if (m.final) { parentPort.postMessage({ hex: hash.digest('hex') }); return }
  if (m.register !== undefined) { buffers.set(m.register, new Uint8Array(m.buffer)); return }
  hash.update(buffers.get(m.buffer).subarray(m.offset, m.offset + m.length))
  if (m.last) buffers.delete(m.buffer)
  parentPort.postMessage({ hashed: true })
})
`

/**
 * On a worker thread, so that hashing (about 1 GB/s for sha512 on one core) runs beside the
 * download and the writes instead of between them. It reads the bytes where the download's sinks
 * keep them (the memory image's slabs, the stream writer's head and slabs): no copy is made for it.
 */
export class WorkerDigest implements RunningDigest {
  private readonly worker: Worker
  /** Shared buffers the worker knows, by id. */
  private readonly registered = new WeakMap<SharedArrayBuffer, number>()
  private nextBufferId = 0
  /** updateShared() calls the worker has not answered yet, oldest first. */
  private readonly pending: Array<{ resolve: () => void; reject: (err: Error) => void }> = []
  private result: { resolve: (hex: string) => void; reject: (err: Error) => void } | undefined
  private failure: Error | undefined

  constructor (type: DigestType) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { type } })
    this.worker.on('message', (message: { hashed?: true; hex?: string }) => {
      if (message.hex !== undefined) this.result?.resolve(message.hex)
      else this.pending.shift()?.resolve()
    })
    this.worker.on('error', (err) => this.fail(err))
    this.worker.on('exit', (code) => { if (this.result !== undefined || this.pending.length > 0) this.fail(new Error(`digest worker exited with code ${code}`)) })
  }

  private fail (err: Error): void {
    this.failure ??= err
    this.result?.reject(err)
    for (const pending of this.pending.splice(0)) pending.reject(err)
    this.result = undefined
  }

  /** Posts the span at once (calls not awaited one by one are hashed in the order made). */
  async updateShared (span: SharedSpan): Promise<void> {
    if (this.failure !== undefined) throw this.failure
    let id = this.registered.get(span.buffer)
    if (id === undefined) {
      id = this.nextBufferId++
      this.registered.set(span.buffer, id)
      this.worker.postMessage({ register: id, buffer: span.buffer })
    }
    const hashed = new Promise<void>((resolve, reject) => { this.pending.push({ resolve, reject }) })
    this.worker.postMessage({ buffer: id, offset: span.offset, length: span.length, last: span.last === true })
    if (span.last === true) this.registered.delete(span.buffer)
    await hashed
  }

  async digestHex (): Promise<string> {
    if (this.failure !== undefined) throw this.failure
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

/**
 * A sink's side of a run's digest: hands it the stream's bytes, each once and in order, where they
 * lie in the sink's shared memory, and remembers how far it got.
 */
export class SpanHasher {
  private digest: RunningDigest | undefined
  /** Stream bytes below this were handed to the digest (or hashed before this sink got them). */
  private hashedUpTo = 0
  /** The newest span's hashing (the digest hashes in order: when it settles, all before it have). */
  private lastHash: Promise<void> = Promise.resolve()

  /** From now on the bytes go to `digest` (undefined: none), but for the stream's first `alreadyHashedBytes`. */
  use (digest: RunningDigest | undefined, alreadyHashedBytes = 0): void {
    this.digest = digest
    this.hashedUpTo = alreadyHashedBytes
    this.lastHash = Promise.resolve()
  }

  /**
   * Stream bytes up to `to`, which lie in `buffer` from stream position `bufferStart`, less those
   * already hashed. `last`: nothing of `buffer` comes later. Resolves once hashed; a failed digest
   * rejects here and fails digestHex() and settled(), never unhandled.
   */
  hash (buffer: Buffer, bufferStart: number, to: number, last = false): Promise<void> {
    const from = Math.max(this.hashedUpTo, bufferStart)
    if (this.digest === undefined || from >= to) return Promise.resolve()
    const hashing = this.digest.updateShared({ buffer: buffer.buffer as SharedArrayBuffer, offset: buffer.byteOffset + from - bufferStart, length: to - from, last })
    hashing.catch(() => {})
    this.hashedUpTo = to
    this.lastHash = hashing
    return hashing
  }

  /** Waits until everything handed over is hashed. */
  async settled (): Promise<void> {
    await this.lastHash
  }
}
