import { parentPort } from 'node:worker_threads'
import { compressCluster } from './compress-cluster.js'
import type { CompressReply, CompressRequest } from './compress-pool.js'

/** One thread of the compression pool: compresses the clusters of a request, hands back their lengths and (when asked) their bytes. */
const port = parentPort
if (port === null) throw new Error('compress-worker runs as a worker thread only')
port.on('message', (request: CompressRequest) => {
  const count = request.input.length / request.clusterBytes // input may be a view of the start of a larger buffer
  const lengths = new Int32Array(count)
  const streams: Uint8Array[] = []
  let reply: CompressReply
  const transfer: ArrayBuffer[] = []
  try {
    for (let i = 0; i < count; i++) {
      const stream = compressCluster(request.compressionType, request.input.subarray(i * request.clusterBytes, (i + 1) * request.clusterBytes))
      lengths[i] = stream.length
      if (request.keepOutput) streams.push(Uint8Array.from(stream)) // a copy: zstd's is a view of a reused buffer
    }
    const output = new Uint8Array(streams.reduce((sum, stream) => sum + stream.length, 0))
    let at = 0
    for (const stream of streams) {
      output.set(stream, at)
      at += stream.length
    }
    reply = { id: request.id, lengths, output }
    transfer.push(lengths.buffer, output.buffer)
  } catch (err) {
    reply = { id: request.id, error: err instanceof Error ? err.message : String(err) }
  }
  port.postMessage(reply, transfer)
})
