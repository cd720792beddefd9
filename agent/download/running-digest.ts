import { createHash } from 'node:crypto'
import { Worker } from 'node:worker_threads'

export type DigestType = 'md5' | 'sha1' | 'sha256' | 'sha512'

/**
 * A digest computed over bytes as they arrive. `update` takes the bytes in order (it may ask the
 * caller to wait: backpressure); `digestHex` ends it. `dispose` drops it without a result.
 */
export interface RunningDigest {
  update (chunk: Uint8Array): void | Promise<void>
  digestHex (): Promise<string>
  dispose (): void
}

/** On the calling thread. */
export function inlineDigest (type: DigestType): RunningDigest {
  const hash = createHash(type)
  return {
    update: (chunk) => { hash.update(chunk) },
    digestHex: async () => hash.digest('hex'),
    dispose: () => {},
  }
}

const SEGMENT_BYTES = 2 * 1024 * 1024 // 2 MiB handed to the worker at a time
const SEGMENTS = 6 // 12 MiB of shared memory in all

// The worker hashes segments of the shared buffer in the order they are posted (messages keep
// their order), answering each so its segment can be filled again. Plain JS, evaluated: nothing
// to find on disk, so it works the same from agent/, dist/ and the rescue image's bundle.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const hash = require('node:crypto').createHash(workerData.type)
const memory = new Uint8Array(workerData.memory)
parentPort.on('message', (m) => {
  if (m.final) { parentPort.postMessage({ hex: hash.digest('hex') }); return }
  hash.update(memory.subarray(m.offset, m.offset + m.length))
  parentPort.postMessage({ segment: m.segment })
})
`

/**
 * On a worker thread, so that hashing (about 1 GB/s for sha512 on one core) runs beside the
 * download and the writes instead of between them. The bytes are copied into one of 8 shared
 * 4 MiB segments; a full segment goes to the worker, and `update` waits only when all 8 are out.
 */
export class WorkerDigest implements RunningDigest {
  private readonly worker: Worker
  private readonly memory = new SharedArrayBuffer(SEGMENT_BYTES * SEGMENTS)
  private readonly view = new Uint8Array(this.memory)
  private readonly free: number[] = []
  private segment: number
  private filled = 0
  private waiting: { resolve: () => void; reject: (err: Error) => void } | undefined
  private result: { resolve: (hex: string) => void; reject: (err: Error) => void } | undefined
  private failure: Error | undefined

  constructor (type: DigestType) {
    for (let i = 1; i < SEGMENTS; i++) this.free.push(i)
    this.segment = 0
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { type, memory: this.memory } })
    this.worker.on('message', (message: { segment?: number; hex?: string }) => {
      if (message.hex !== undefined) {
        this.result?.resolve(message.hex)
        return
      }
      if (message.segment !== undefined) this.free.push(message.segment)
      const waiting = this.waiting
      this.waiting = undefined
      waiting?.resolve()
    })
    this.worker.on('error', (err) => this.fail(err))
    this.worker.on('exit', (code) => { if (this.result !== undefined || this.waiting !== undefined) this.fail(new Error(`digest worker exited with code ${code}`)) })
  }

  private fail (err: Error): void {
    this.failure ??= err
    this.waiting?.reject(err)
    this.result?.reject(err)
    this.waiting = undefined
    this.result = undefined
  }

  update (chunk: Uint8Array): void | Promise<void> {
    let from = 0
    while (from < chunk.length) {
      if (this.failure !== undefined) throw this.failure
      const n = Math.min(SEGMENT_BYTES - this.filled, chunk.length - from)
      this.view.set(chunk.subarray(from, from + n), this.segment * SEGMENT_BYTES + this.filled)
      this.filled += n
      from += n
      if (this.filled === SEGMENT_BYTES) {
        this.post()
        const next = this.free.shift()
        if (next === undefined) return this.waitForSegment().then(async () => await this.update(chunk.subarray(from)))
        this.segment = next
      }
    }
  }

  private post (): void {
    this.worker.postMessage({ segment: this.segment, offset: this.segment * SEGMENT_BYTES, length: this.filled })
    this.filled = 0
  }

  private async waitForSegment (): Promise<void> {
    while (this.free.length === 0) {
      await new Promise<void>((resolve, reject) => { this.waiting = { resolve, reject } })
    }
    this.segment = this.free.shift() as number
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
