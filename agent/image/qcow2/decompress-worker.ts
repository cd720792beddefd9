import { parentPort } from 'node:worker_threads'
import { decompressCluster } from './decompress.js'
import type { DecompressReply, DecompressRequest } from './decompress-pool.js'

/** One thread of the decompression pool: decodes the clusters of a request into one buffer it hands back. */
const port = parentPort
if (port === null) throw new Error('decompress-worker runs as a worker thread only')
port.on('message', (request: DecompressRequest) => {
  const output = new Uint8Array(request.lengths.length * request.clusterBytes)
  let reply: DecompressReply = { id: request.id, output }
  let at = 0
  for (let i = 0; i < request.lengths.length; i++) {
    const length = request.lengths[i] ?? 0
    try {
      decompressCluster(
        request.compressionType,
        request.input.subarray(at, at + length),
        output.subarray(i * request.clusterBytes, (i + 1) * request.clusterBytes),
      )
    } catch (err) {
      reply = { id: request.id, index: i, error: err instanceof Error ? err.message : String(err) }
      break
    }
    at += length
  }
  port.postMessage(reply, 'output' in reply ? [output.buffer] : [])
})
