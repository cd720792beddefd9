import { Worker } from 'node:worker_threads'

/**
 * The thread pool the qcow2 codecs share (decompress-pool, compress-pool): `size` threads of one
 * worker script, started on first use and stopped after IDLE_STOP_MS without work. Each request
 * goes to the least busy thread with its buffers transferred; its reply (matched by `id`) is turned
 * into a result or an Error by `settle`. A thread holds the process open only while it has work
 * (an idle one is unref'd), and one that dies fails its requests and is replaced on the next.
 */

interface Pending<Result> {
  resolve: (result: Result) => void
  reject: (err: Error) => void
}

interface Thread<Result> {
  worker: Worker
  pending: Map<number, Pending<Result>>
  dead: boolean
}

const IDLE_STOP_MS = 10_000 // threads stop after 10 s without work

export class WorkerPool<Request extends { id: number }, Reply extends { id: number }, Result> {
  private threads: Array<Thread<Result>> = []
  private nextId = 0
  private idleTimer: NodeJS.Timeout | undefined

  /** `what` names the threads in the error when one exits ("compression", "decompression"). */
  constructor (
    readonly size: number,
    private readonly workerUrl: URL,
    private readonly what: string,
    private readonly settle: (reply: Reply) => Result | Error,
  ) {}

  /** Sends the request `make(id)` to the least busy thread, `transfer` handed over; resolves with its settled reply. */
  async run (make: (id: number) => Request, transfer: ArrayBuffer[]): Promise<Result> {
    clearTimeout(this.idleTimer)
    this.threads = this.threads.filter((t) => !t.dead)
    while (this.threads.length < this.size) this.threads.push(this.start())
    let thread = this.threads[0] as Thread<Result>
    for (const candidate of this.threads) if (candidate.pending.size < thread.pending.size) thread = candidate
    const id = this.nextId++
    const request = make(id)
    return await new Promise<Result>((resolve, reject) => {
      thread.pending.set(id, { resolve, reject })
      thread.worker.ref() // a job waiting on this thread must keep the process alive
      thread.worker.postMessage(request, transfer)
    })
  }

  /** Stops the threads (requests under way fail); the next request starts new ones. */
  async close (): Promise<void> {
    clearTimeout(this.idleTimer)
    const threads = this.threads
    this.threads = []
    await Promise.all(threads.map(async (thread) => await thread.worker.terminate()))
  }

  private start (): Thread<Result> {
    const thread: Thread<Result> = { worker: new Worker(this.workerUrl), pending: new Map(), dead: false }
    thread.worker.unref()
    const fail = (err: Error): void => {
      thread.dead = true
      for (const pending of thread.pending.values()) pending.reject(err)
      thread.pending.clear()
      this.settled(thread)
    }
    thread.worker.on('message', (reply: Reply) => {
      const pending = thread.pending.get(reply.id)
      if (pending === undefined) return
      thread.pending.delete(reply.id)
      this.settled(thread)
      const result = this.settle(reply)
      if (result instanceof Error) pending.reject(result)
      else pending.resolve(result)
    })
    thread.worker.on('error', fail)
    thread.worker.on('exit', (code) => { fail(new Error(`${this.what} worker exited with code ${code}`)) })
    return thread
  }

  /** A request ended on `thread`: let go of the process when it has none left, arm the idle stop when no thread has. */
  private settled (thread: Thread<Result>): void {
    if (thread.pending.size > 0) return
    thread.worker.unref()
    if (this.threads.some((t) => t.pending.size > 0)) return
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => { void this.close() }, IDLE_STOP_MS)
    this.idleTimer.unref()
  }
}
