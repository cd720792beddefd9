/**
 * `log.collect_system_logs`: what Ironic stores with a failed deploy ([agent]deploy_logs_collect),
 * a gzip'd tar as ironic-python-agent sends it. Here: the agent's own log (the last lines kept in
 * memory by LogRing; the log never holds a secret) and, where it runs, the kernel's `dmesg`.
 */
import { execFile } from 'node:child_process'
import { Writable } from 'node:stream'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'

const run = promisify(execFile)

/** The last `limitBytes` of what is written to it (the agent's log stream, teed). */
export class LogRing extends Writable {
  private chunks: Buffer[] = []
  private bytes = 0

  constructor (private readonly limitBytes = 4 * 1024 * 1024) {
    super()
  }

  override _write (chunk: Buffer | string, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    const piece = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)
    this.chunks.push(piece)
    this.bytes += piece.length
    while (this.bytes > this.limitBytes && this.chunks.length > 1) this.bytes -= (this.chunks.shift() as Buffer).length
    done()
  }

  text (): Buffer {
    return Buffer.concat(this.chunks)
  }
}

/** A gzip'd POSIX tar (ustar) of these files. */
export function tarGz (files: ReadonlyArray<{ name: string; data: Buffer }>, mtime = new Date()): Buffer {
  const blocks: Buffer[] = []
  for (const file of files) {
    const header = Buffer.alloc(512)
    header.write(file.name.slice(0, 100), 0, 'utf8')
    header.write('0000644\0', 100, 'ascii') // mode
    header.write('0000000\0', 108, 'ascii') // uid
    header.write('0000000\0', 116, 'ascii') // gid
    header.write(`${file.data.length.toString(8).padStart(11, '0')}\0`, 124, 'ascii')
    header.write(`${Math.floor(mtime.getTime() / 1000).toString(8).padStart(11, '0')}\0`, 136, 'ascii')
    header.write('        ', 148, 'ascii') // checksum, counted as spaces
    header.write('0', 156, 'ascii') // a regular file
    header.write('ustar\x0000', 257, 'binary')
    let sum = 0
    for (const byte of header) sum += byte
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii')
    blocks.push(header, file.data, Buffer.alloc((512 - (file.data.length % 512)) % 512))
  }
  blocks.push(Buffer.alloc(1024)) // two zero blocks end the archive
  return gzipSync(Buffer.concat(blocks))
}

/** The logs as collect_system_logs sends them. */
export async function collectSystemLogs (ring: LogRing | undefined): Promise<Buffer> {
  const files = [{ name: 'byoi-agent.log', data: ring?.text() ?? Buffer.alloc(0) }]
  const dmesg = await run('dmesg', [], { maxBuffer: 8 * 1024 * 1024, encoding: 'buffer' }).then((out) => out.stdout, () => undefined)
  if (dmesg !== undefined) files.push({ name: 'dmesg', data: dmesg })
  return tarGz(files)
}
