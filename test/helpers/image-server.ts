import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ImageServerOptions {
  /** The file served at every path. */
  image: Buffer
  /** Attempt numbers (0-based) whose body is cut by a socket reset after this many bytes. */
  resetAfter?: Record<number, number>
  /** Send no Content-Length (chunked). */
  chunked?: boolean
  /** Answer 401 unless this exact Authorization header is sent. */
  authorization?: string
}

export interface ImageServer {
  url: (path?: string) => string
  requests: IncomingMessage['headers'][]
  close: () => Promise<void>
}

/** A small HTTP server on 127.0.0.1 serving one image, with Range + ETag, and scripted resets. */
export async function startImageServer (options: ImageServerOptions): Promise<ImageServer> {
  const { image } = options
  const etag = `"${createHash('sha1').update(image).digest('hex')}"`
  const requests: IncomingMessage['headers'][] = []
  const server: Server = createServer((req, res) => {
    const attempt = requests.length
    requests.push(req.headers)
    if (options.authorization !== undefined && req.headers.authorization !== options.authorization) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('unauthorized')
      return
    }
    let start = 0
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    if (range !== null && req.headers['if-range'] === etag) start = Number(range[1])
    const body = image.subarray(start)
    const headers: Record<string, string> = { etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' }
    if (options.chunked !== true) headers['content-length'] = String(body.length)
    if (start > 0) headers['content-range'] = `bytes ${start}-${image.length - 1}/${image.length}`
    res.writeHead(start > 0 ? 206 : 200, headers)
    const cut = options.resetAfter?.[attempt]
    if (cut !== undefined) {
      res.write(body.subarray(0, cut), () => { setTimeout(() => res.socket?.destroy(), 20) })
      return
    }
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: (path = '/image.raw') => `http://127.0.0.1:${port}${path}`,
    requests,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** A random image of `sizeBytes` with no partition table (a recognisable first sector, no MBR signature). */
export function makeImage (sizeBytes: number): Buffer {
  const image = randomBytes(sizeBytes)
  image.write('BYOI-TEST-IMAGE', 0)
  image[510] = 0
  return image
}

/**
 * A random image with a GPT made by sgdisk (`sectorBytes` 512) : one Linux partition from LBA 2048
 * to the last usable LBA, its backup GPT at the image's end, as a cloud image has.
 */
export function makeGptImage (sizeBytes: number, sectorBytes: 512 | 4096 = 512): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-gpt-'))
  try {
    const file = join(dir, 'image.raw')
    writeFileSync(file, makeImage(sizeBytes))
    const args = ['-o', '-n', `1:${(1024 * 1024) / sectorBytes}:0`, '-t', '1:8300', '-c', '1:root']
    if (sectorBytes === 512) {
      execFileSync('sgdisk', [...args, file], { stdio: 'ignore' })
    } else {
      // sgdisk writes 4096-byte LBAs only on a device that has them: a 4Kn loop device.
      const device = execFileSync('losetup', ['-b', '4096', '-f', '--show', file], { encoding: 'utf8' }).trim()
      try {
        execFileSync('sgdisk', [...args, device], { stdio: 'ignore' })
      } finally {
        execFileSync('losetup', ['-d', device])
      }
    }
    return readFileSync(file)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The image's partition 1 data (from 1 MiB to the last usable LBA), as makeGptImage lays it out. */
export function gptDataRange (image: Buffer, sectorBytes: 512 | 4096 = 512): { offset: number; length: number } {
  const offset = 1024 * 1024
  const backupBytes = sectorBytes + 128 * 128 // the backup header's sector and 128 entries of 128 bytes
  return { offset, length: image.length - backupBytes - offset }
}

export function sha (type: 'md5' | 'sha1' | 'sha256' | 'sha512', data: Buffer): string {
  return createHash(type).update(data).digest('hex')
}
