import t from 'tap'
import { randomBytes } from 'node:crypto'
import { gunzipSync } from 'node:zlib'
import { gzipCompress } from '../../../agent/capture/raw-capture.js'

t.test('gzipCompress: gunzip gives the bytes back; a reader that stops early stops the source', async (t) => {
  const pieces = Array.from({ length: 8 }, () => randomBytes(256 * 1024))
  const out: Buffer[] = []
  for await (const chunk of gzipCompress((async function * () { yield * pieces })())) out.push(chunk)
  t.ok(gunzipSync(Buffer.concat(out)).equals(Buffer.concat(pieces)), 'gunzip: the same bytes')

  let read = 0
  let finished = false
  const endless = async function * (): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        read++
        yield randomBytes(256 * 1024)
      }
    } finally {
      finished = true
    }
  }
  for await (const chunk of gzipCompress(endless())) if (chunk.length > 0) break
  await new Promise((resolve) => setImmediate(resolve))
  t.ok(finished, `the source ended after ${read} pieces`)
  t.ok(read < 64, 'read no further than the pipe\'s buffers')
})

t.test('gzipCompress: a source that fails fails the output', async (t) => {
  const failing = async function * (): AsyncGenerator<Buffer> {
    yield randomBytes(1024)
    throw new Error('a read failed at byte 1024')
  }
  await t.rejects((async () => { for await (const chunk of gzipCompress(failing())) void chunk })(), /a read failed at byte 1024/)
})
