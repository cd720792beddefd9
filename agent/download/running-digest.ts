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
 * download and the writes instead of between them. It reads the bytes where they lie, in the
 * download's slabs (download/slab-feed): no copy is made for it.
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
    this.worker.on('exit', (code) => {
      if (this.result !== undefined || this.pending.length > 0) this.fail(new Error(`digest worker exited with code ${code}`))
    })
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
