import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LogRing, tarGz } from '../../../agent/ironic/system-logs.js'

t.test('tarGz makes an archive GNU tar lists and extracts byte for byte', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-tar-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const big = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251))
  const files = [{ name: 'byoi-agent.log', data: Buffer.from('line 1\nline 2\n') }, { name: 'dmesg', data: big }, { name: 'empty', data: Buffer.alloc(0) }]
  writeFileSync(join(dir, 'logs.tar.gz'), tarGz(files))
  t.equal(execFileSync('tar', ['-tzf', join(dir, 'logs.tar.gz')], { encoding: 'utf8' }), 'byoi-agent.log\ndmesg\nempty\n')
  execFileSync('tar', ['-xzf', join(dir, 'logs.tar.gz'), '-C', dir])
  t.equal(readFileSync(join(dir, 'byoi-agent.log'), 'utf8'), 'line 1\nline 2\n')
  t.same(readFileSync(join(dir, 'dmesg')), big)
  t.equal(readFileSync(join(dir, 'empty')).length, 0)
})

t.test('LogRing keeps the last lines within its limit', async (t) => {
  const ring = new LogRing(100)
  for (let i = 0; i < 50; i++) ring.write(`line ${i}\n`)
  await new Promise((resolve) => { ring.end(resolve) })
  const text = ring.text().toString()
  t.ok(text.length <= 100)
  t.match(text, /line 49\n$/)
})
