import t from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { CompressedImageError, createDecoder, detectCompression, type StreamDecoder } from '../../../agent/image/stream-decoder.js'

/** An image-like input: random runs, text and zeros (compressible, not trivially). */
function imageLike (bytes: number): Buffer {
  const unit = Buffer.concat([randomBytes(8 * 1024), Buffer.from('lorem ipsum dolor sit amet '.repeat(1000)).subarray(0, 24 * 1024), Buffer.alloc(32 * 1024)])
  const out = Buffer.alloc(bytes)
  for (let at = 0; at < bytes; at += unit.length) unit.copy(out, at, 0, Math.min(unit.length, bytes - at))
  return out
}

/** Feeds `input` in pieces of `piece` bytes; returns the output, joined. */
async function decode (compressed: Buffer, piece = 100_003, onOutput?: () => Promise<void>): Promise<{ output: Buffer; decoder: StreamDecoder }> {
  const pieces: Buffer[] = []
  const compression = detectCompression(compressed)
  if (compression === undefined) throw new Error('not compressed')
  const decoder = createDecoder(compression, async (data) => {
    await onOutput?.()
    pieces.push(data)
  })
  for (let at = 0; at < compressed.length; at += piece) {
    // The slab is reused upstream once push resolves: give a copy and scribble over it after.
    const slab = Buffer.from(compressed.subarray(at, at + piece))
    await decoder.push(slab)
    slab.fill(0xee)
  }
  await decoder.end()
  return { output: Buffer.concat(pieces), decoder }
}

const gzip = (input: Buffer, ...args: string[]): Buffer => execFileSync('gzip', ['-c', ...args], { input, maxBuffer: 1 << 30 })

t.test('detectCompression: the magic numbers, and nothing else', async (t) => {
  t.equal(detectCompression(gzip(Buffer.from('x'))), 'gzip')
  t.equal(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00])), undefined, 'zstd: no decoder yet')
  t.equal(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00])), undefined, 'xz: no decoder yet')
  t.equal(detectCompression(Buffer.from([0x1f, 0x8b, 0x07])), undefined, 'gzip magic with an undefined method')
  t.equal(detectCompression(Buffer.alloc(512)), undefined, 'zeros (an MBR-less raw image)')
  t.equal(detectCompression(Buffer.from([0x1f])), undefined, 'too short to tell')
})

t.test('gzip: decodes what gzip(1) made, in order, whatever the input pieces', async (t) => {
  const image = imageLike(5 * 1024 * 1024 + 777)
  const compressed = gzip(image)
  for (const piece of [4096, 100_003, compressed.length]) {
    const { output } = await decode(compressed, piece)
    t.ok(output.equals(image), `pieces of ${piece} bytes`)
  }
  const small = imageLike(20_000)
  t.ok((await decode(gzip(small), 1)).output.equals(small), 'one byte at a time')
})

t.test('gzip: several members one after the other decode as one stream (gzip -d does)', async (t) => {
  const a = imageLike(300_000)
  const b = randomBytes(50_000)
  const { output } = await decode(Buffer.concat([gzip(a), gzip(b, '-1')]))
  t.ok(output.equals(Buffer.concat([a, b])))
})

t.test('gzip: a stream cut short fails at end with a clear reason', async (t) => {
  const compressed = gzip(imageLike(1024 * 1024))
  const error = await decode(compressed.subarray(0, compressed.length - 100)).then(() => undefined, (err: unknown) => err)
  t.type(error, CompressedImageError)
  t.match(error, { message: 'gzip stream: it ends before its end mark (truncated)' })
})

t.test('gzip: a corrupt byte fails, named as a decoding error', async (t) => {
  const compressed = gzip(imageLike(1024 * 1024))
  const middle = Math.floor(compressed.length / 2)
  compressed.writeUInt8((compressed.readUInt8(middle) ^ 0xff), middle)
  const error = await decode(compressed).then(() => undefined, (err: unknown) => err)
  t.type(error, CompressedImageError)
  t.match(error, { message: /^gzip stream: it cannot be decoded \(/ })
})

t.test('gzip: an output that fails stops the decoding with that error', async (t) => {
  const compressed = gzip(imageLike(4 * 1024 * 1024))
  let calls = 0
  const boom = new Error('disk write failed')
  const error = await decode(compressed, 65536, async () => { if (++calls === 2) throw boom }).then(() => undefined, (err: unknown) => err)
  t.equal(error, boom, 'the output\'s own error, unchanged')
  t.equal(calls, 2, 'no output after the failure')
})

t.test('gzip: a slow output holds the input back (bounded memory)', async (t) => {
  const compressed = gzip(Buffer.alloc(64 * 1024 * 1024)) // 64 MiB of zeros: ~64 KiB compressed
  let outstanding = 0
  let maxOutstanding = 0
  const decoder = createDecoder('gzip', async (data) => {
    outstanding += data.length
    maxOutstanding = Math.max(maxOutstanding, outstanding)
    await new Promise((resolve) => setImmediate(resolve))
    outstanding -= data.length
  })
  await decoder.push(compressed)
  await decoder.end()
  t.ok(maxOutstanding <= 2 * 1024 * 1024, `at most ${maxOutstanding} output bytes waiting at once`)
})
