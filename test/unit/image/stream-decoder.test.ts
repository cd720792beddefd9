import t from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { CompressedImageError, createDecoder, detectCompression, type StreamCompression, type StreamDecoder } from '../../../agent/image/stream-decoder.js'

/** An image-like input: random runs, text and zeros (compressible, not trivially). */
function imageLike (bytes: number): Buffer {
  const unit = Buffer.concat([randomBytes(8 * 1024), Buffer.from('lorem ipsum dolor sit amet '.repeat(1000)).subarray(0, 24 * 1024), Buffer.alloc(32 * 1024)])
  const out = Buffer.alloc(bytes)
  for (let at = 0; at < bytes; at += unit.length) unit.copy(out, at, 0, Math.min(unit.length, bytes - at))
  return out
}

interface Decoded { output: Buffer; decoder: StreamDecoder }

/** Feeds `input` in pieces of `piece` bytes; returns the output, joined (each piece given back once copied, if `giveBack`). */
async function decode (compressed: Buffer, piece = 100_003, onOutput?: () => Promise<void>, giveBack = false): Promise<Decoded> {
  const pieces: Buffer[] = []
  const compression = detectCompression(compressed)
  if (compression === undefined) throw new Error('not compressed')
  const decoder = createDecoder(compression, async (data, release) => {
    await onOutput?.()
    pieces.push(giveBack ? Buffer.from(data) : data)
    // A piece given back is reused: scribbling over it must not change what was taken.
    if (giveBack) {
      data.fill(0xdd)
      release()
    }
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

const failure = async (compressed: Buffer, piece?: number): Promise<unknown> => await decode(compressed, piece).then(() => undefined, (err: unknown) => err)

const run = (command: string, input: Buffer, args: string[]): Buffer => execFileSync(command, args, { input, maxBuffer: 1 << 30 })
/** Each kind's file as its own tool makes it (the reference), and that tool's decoder. */
const TOOLS: Record<StreamCompression, { compress: (input: Buffer, ...args: string[]) => Buffer; decompress: (input: Buffer) => Buffer }> = {
  gzip: { compress: (input, ...args) => run('gzip', input, ['-c', ...args]), decompress: (input) => run('gzip', input, ['-d', '-c']) },
  zstd: { compress: (input, ...args) => run('zstd', input, ['-c', '-q', ...args]), decompress: (input) => run('zstd', input, ['-d', '-c', '-q']) },
  xz: { compress: (input, ...args) => run('xz', input, ['-c', ...args]), decompress: (input) => run('xz', input, ['-d', '-c']) },
}
const KINDS = Object.keys(TOOLS) as StreamCompression[]
const { gzip, zstd, xz } = { gzip: TOOLS.gzip.compress, zstd: TOOLS.zstd.compress, xz: TOOLS.xz.compress }

t.test('detectCompression: the magic numbers, and nothing else', async (t) => {
  t.equal(detectCompression(gzip(Buffer.from('x'))), 'gzip')
  t.equal(detectCompression(zstd(Buffer.from('x'))), 'zstd')
  t.equal(detectCompression(xz(Buffer.from('x'))), 'xz')
  t.equal(detectCompression(Buffer.from([0x5e, 0x2a, 0x4d, 0x18, 0, 0, 0, 0])), 'zstd', 'a zstd skippable frame first (pzstd writes one)')
  t.equal(detectCompression(Buffer.from([0x60, 0x2a, 0x4d, 0x18, 0, 0, 0, 0])), undefined, 'not a skippable frame\'s magic')
  t.equal(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x01])), undefined, 'xz magic but its last byte')
  t.equal(detectCompression(Buffer.from([0x1f, 0x8b, 0x07])), undefined, 'gzip magic with an undefined method')
  t.equal(detectCompression(Buffer.alloc(512)), undefined, 'zeros (an MBR-less raw image)')
  t.equal(detectCompression(Buffer.from([0x1f])), undefined, 'too short to tell')
  t.equal(detectCompression(Buffer.from([0x28, 0xb5, 0x2f])), undefined, 'zstd\'s magic cut short')
})

for (const kind of KINDS) {
  const { compress, decompress } = TOOLS[kind]

  t.test(`${kind}: decodes what ${kind}(1) made byte-equal to ${kind} -d, whatever the input pieces`, async (t) => {
    const image = imageLike(5 * 1024 * 1024 + 777)
    const compressed = compress(image)
    const reference = decompress(compressed)
    t.ok(reference.equals(image), `${kind} -d gives the image back`)
    for (const piece of [4096, 100_003, compressed.length]) {
      const { output } = await decode(compressed, piece)
      t.ok(output.equals(reference), `pieces of ${piece} bytes`)
    }
    t.ok((await decode(compressed, 2 * 1024 * 1024, undefined, true)).output.equals(reference), 'each output piece given back once taken')
    const small = imageLike(20_000)
    t.ok((await decode(compress(small), 1)).output.equals(small), 'one byte at a time')
  })

  t.test(`${kind}: several ${kind === 'zstd' ? 'frames' : kind === 'xz' ? 'streams' : 'members'} one after the other decode as one stream (${kind} -d does)`,
    async (t) => {
      const a = imageLike(300_000)
      const b = randomBytes(50_000)
      const joined = Buffer.concat([compress(a), compress(b, '-1')])
      t.ok((await decode(joined)).output.equals(decompress(joined)), 'equal to what the tool decodes')
      t.ok((await decode(joined)).output.equals(Buffer.concat([a, b])))
    })

  t.test(`${kind}: a stream cut short fails at end with a clear reason`, async (t) => {
    const compressed = compress(imageLike(1024 * 1024))
    for (const cut of [100, 1]) {
      const error = await failure(compressed.subarray(0, compressed.length - cut))
      t.type(error, CompressedImageError, `${cut} bytes missing`)
      t.match(error, { message: `${kind} stream: it ends before its end mark (truncated)`, compression: kind })
    }
  })

  t.test(`${kind}: a corrupt byte fails, named as a decoding error`, async (t) => {
    const compressed = compress(imageLike(1024 * 1024))
    const middle = Math.floor(compressed.length / 2)
    compressed.writeUInt8((compressed.readUInt8(middle) ^ 0xff), middle)
    const error = await failure(compressed)
    t.type(error, CompressedImageError)
    t.match(error, { message: new RegExp(`^${kind} stream: it cannot be decoded \\(.+\\)$`) })
  })

  t.test(`${kind}: an output that fails stops the decoding with that error`, async (t) => {
    const compressed = compress(imageLike(4 * 1024 * 1024))
    let calls = 0
    const boom = new Error('disk write failed')
    const error = await decode(compressed, 65536, async () => { if (++calls === 2) throw boom }).then(() => undefined, (err: unknown) => err)
    t.equal(error, boom, 'the output\'s own error, unchanged')
    t.equal(calls, 2, 'no output after the failure')
  })

  t.test(`${kind}: a slow output holds the input back (bounded memory)`, async (t) => {
    const compressed = compress(Buffer.alloc(64 * 1024 * 1024)) // 64 MiB of zeros: a few KiB compressed
    let outstanding = 0
    let maxOutstanding = 0
    let decoded = 0
    const decoder = createDecoder(kind, async (data) => {
      outstanding += data.length
      maxOutstanding = Math.max(maxOutstanding, outstanding)
      await new Promise((resolve) => setImmediate(resolve))
      outstanding -= data.length
      decoded += data.length
    })
    await decoder.push(compressed)
    await decoder.end()
    t.equal(decoded, 64 * 1024 * 1024)
    t.ok(maxOutstanding <= 2 * 1024 * 1024, `at most ${maxOutstanding} output bytes waiting at once`)
  })

  t.test(`${kind}: destroyed half-way, it hands nothing more on, and the next decoder works`, async (t) => {
    const compressed = compress(imageLike(4 * 1024 * 1024))
    let outputs = 0
    const decoder = createDecoder(kind, async () => { outputs++ })
    await decoder.push(compressed.subarray(0, compressed.length >> 1))
    decoder.destroy()
    const seen = outputs
    await new Promise((resolve) => setTimeout(resolve, 20))
    t.equal(outputs, seen, 'no output after destroy')
    t.ok((await decode(compressed)).output.equals(decompress(compressed)), 'a new decoder decodes the whole file')
  })
}

t.test('zstd: skippable frames are skipped, first, between and last', async (t) => {
  const a = imageLike(200_000)
  const b = imageLike(100_000)
  const skippable = (magicLow: number, content: Buffer): Buffer => {
    const header = Buffer.alloc(8)
    header.writeUInt32LE(0x184d2a50 + magicLow, 0)
    header.writeUInt32LE(content.length, 4)
    return Buffer.concat([header, content])
  }
  const file = Buffer.concat([
    skippable(0, Buffer.from('pzstd-like header')), zstd(a), skippable(0xf, Buffer.alloc(0)), zstd(b), skippable(3, randomBytes(999)),
  ])
  t.ok(TOOLS.zstd.decompress(file).equals(Buffer.concat([a, b])), 'zstd -d skips them')
  t.ok((await decode(file)).output.equals(Buffer.concat([a, b])))
})

t.test('zstd: a frame made from a pipe (no content size) and one of many blocks decode whole', async (t) => {
  const image = imageLike(3 * 1024 * 1024)
  const piped = execFileSync('sh', ['-c', 'cat | zstd -q -c -B131072'], { input: image, maxBuffer: 1 << 30 })
  t.ok((await decode(piped, 65536)).output.equals(image))
})

t.test('zstd: the content checksum is checked: a changed byte that the format alone cannot see fails', async (t) => {
  // Random bytes are stored as raw blocks: a flipped byte in one decodes to a flipped byte, nothing else.
  const image = randomBytes(1024 * 1024)
  const flip = (file: Buffer): Buffer => {
    const copy = Buffer.from(file)
    const at = Math.floor(copy.length / 2)
    copy.writeUInt8(copy.readUInt8(at) ^ 0x01, at)
    return copy
  }
  const unchecked = (await decode(flip(zstd(image, '--no-check')))).output
  t.equal(unchecked.length, image.length, 'without a checksum, the flip goes through unseen (the download\'s checksum is the guard)')
  t.notOk(unchecked.equals(image))
  const error = await failure(flip(zstd(image)))
  t.type(error, CompressedImageError)
  t.match(error, { message: 'zstd stream: it cannot be decoded (Restored data doesn\'t match checksum)' })
})

t.test('zstd: bytes after the last frame fail', async (t) => {
  const image = imageLike(500_000)
  for (const garbage of [Buffer.from('trailing garbage, not a frame'), Buffer.from('ab')]) {
    const error = await failure(Buffer.concat([zstd(image), garbage]))
    t.type(error, CompressedImageError, `${garbage.length} bytes after`)
    t.match(error, { message: 'zstd stream: it cannot be decoded (bytes after its last frame are not a zstd frame)' })
  }
})

t.test('xz: bytes after the last stream fail; stream padding (zeros, by fours) is fine', async (t) => {
  const image = imageLike(500_000)
  const error = await failure(Buffer.concat([xz(image), Buffer.from('trailing garbage, not a stream')]))
  t.type(error, CompressedImageError)
  t.match(error, { message: 'xz stream: it cannot be decoded (no xz stream header where one must start: corrupt, or bytes after its last stream)' })
  t.ok((await decode(Buffer.concat([xz(image), Buffer.alloc(8)]))).output.equals(image), 'eight zero bytes of padding')
  t.type(await failure(Buffer.concat([xz(image), Buffer.alloc(3)])), CompressedImageError, 'padding not a multiple of four')
})

t.test('xz: what this decoder lacks is said, not taken for corruption', async (t) => {
  const image = imageLike(300_000)
  for (const args of [['-C', 'sha256'], ['--x86', '--lzma2=preset=1']]) {
    const error = await failure(xz(image, ...args))
    const lacks = 'xz stream: it cannot be decoded (it uses an option this decoder lacks: a SHA-256 check, or a BCJ or delta filter)'
    t.match(error, { message: lacks }, args.join(' '))
  }
  t.match(await failure(xz(image, '--lzma2=dict=128MiB')), { message: 'xz stream: it cannot be decoded (its dictionary is larger than 64 MiB)' })
  t.ok((await decode(xz(image, '-C', 'crc32'))).output.equals(image), 'a CRC32 check')
  t.ok((await decode(xz(image, '-C', 'none'))).output.equals(image), 'no check')
  t.ok((await decode(xz(image, '-9'))).output.equals(image), '-9 (a 64 MiB dictionary)')
})
