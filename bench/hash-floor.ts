/**
 * The agent's hashing floor: Node's own sha512 over a file's bytes, read from the page cache in
 * 2 MiB pieces into one reused buffer, on the main thread. Prints the digest as sha512sum does
 * (`HEX  PATH`). `node dist/bench/hash-floor.js FILE`
 */
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'

const PIECE_BYTES = 2 * 1024 * 1024

async function main (path: string): Promise<void> {
  const hash = createHash('sha512')
  const buffer = Buffer.allocUnsafe(PIECE_BYTES)
  const file = await fs.open(path, 'r')
  try {
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, PIECE_BYTES, null)
      if (bytesRead === 0) break
      hash.update(buffer.subarray(0, bytesRead))
    }
  } finally {
    await file.close()
  }
  console.log(`${hash.digest('hex')}  ${path}`)
}

const path = process.argv[2]
if (path === undefined) {
  console.error('usage: node dist/bench/hash-floor.js FILE')
  process.exitCode = 2
} else {
  main(path).catch((err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
