import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { describeContent } from '../../../agent/image/describe-content.js'

const MiB = 1024 * 1024

t.test('what an image without a partition table holds, on bytes made by the real tools', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-describe-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const sample = Buffer.alloc(2 * MiB, 0x41)
  const made = (name: string, tool: string, args: string[]): Buffer => {
    execFileSync(tool, args, { stdio: 'ignore' })
    return readFileSync(join(dir, name))
  }
  const ext4 = join(dir, 'ext4.img')
  execFileSync('truncate', ['-s', '8M', ext4])
  const fat = join(dir, 'fat.img')
  execFileSync('truncate', ['-s', '8M', fat])
  const cases: Array<[string, Buffer, string]> = [
    ['gzip', gzipSync(sample), 'gzip data'],
    ['xz', execFileSync('xz', ['-c'], { input: sample }), 'xz data'],
    ['zstd', execFileSync('zstd', ['-c', '-q'], { input: sample }), 'zstd data'],
    ['qcow2', made('a.qcow2', 'qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'a.qcow2'), '1M']), 'a qcow2 image'],
    ['ext4', made('ext4.img', 'mkfs.ext4', ['-q', '-F', ext4]), 'an ext2/ext3/ext4 filesystem'],
    ['FAT', made('fat.img', 'mkfs.fat', [fat]), 'a FAT filesystem'],
    ['swap', (() => {
      execFileSync('truncate', ['-s', '1M', join(dir, 'swap.img')])
      return made('swap.img', 'mkswap', [join(dir, 'swap.img')])
    })(), 'a Linux swap area'],
    ['zeros', Buffer.alloc(MiB), 'zeros'],
    ['empty', Buffer.alloc(0), 'nothing (0 bytes)'],
    ['text', Buffer.from('#!/bin/sh\necho hi\n'), 'text'],
    ['HTML', Buffer.from('  <html><head><title>403 Forbidden</title></head></html>'), 'text (an HTML page)'],
  ]
  const iso = join(dir, 'a.iso')
  execFileSync('xorriso', ['-as', 'mkisofs', '-quiet', '-o', iso, join(dir, 'a.qcow2')], { stdio: 'ignore' })
  cases.push(['ISO 9660', readFileSync(iso), 'an ISO 9660 filesystem'])
  for (const [name, bytes, what] of cases) t.equal(describeContent(bytes.subarray(0, MiB)), what, name)
})
