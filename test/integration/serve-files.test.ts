/**
 * scripts/serve-files.ts, the benchmarks' and the demo's file server: a request it cannot decode is
 * answered 400 and the server goes on serving (its request handler is async: a rejection left
 * unhandled would end the process).
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'

const SCRIPT = fileURLToPath(new URL('../../scripts/serve-files.ts', import.meta.url))

async function startServeFiles (dir: string, more: string[] = []): Promise<string> {
  const child = spawn(process.execPath, [...process.execArgv, SCRIPT, dir, '--port', '0', ...more], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL in time; stderr: ${stderr}`)), 30_000)
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString()
      const match = /^listening (http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)
      if (match?.[1] !== undefined) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`serve-files exited (${code}); stderr: ${stderr}`))
    })
  })
}

t.test('a malformed percent-encoding is a 400, and the server keeps serving', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'image.raw'), 'the image')
  const url = await startServeFiles(dir)
  const bad = await request(`${url}/%E0%A4%A`)
  await bad.body.dump()
  t.equal(bad.statusCode, 400)
  const good = await request(`${url}/image.raw`)
  t.equal(good.statusCode, 200)
  t.equal(await good.body.text(), 'the image')
  const missing = await request(`${url}/nothing-here`)
  await missing.body.dump()
  t.equal(missing.statusCode, 404)
})

t.test('--rate caps each response: the bytes as without it, no faster than the rate even for a short range', async (t) => {
  const dir = t.testdir()
  const file = Buffer.alloc(300_000)
  for (let i = 0; i < file.length; i++) file[i] = (i * 7) & 0xff
  writeFileSync(join(dir, 'image.raw'), file)
  const url = await startServeFiles(dir, ['--rate', '1000000'])
  for (const [range, bytes] of [[undefined, file], ['bytes=1000-200999', file.subarray(1000, 201_000)]] as const) {
    const startedMs = performance.now()
    const answer = await request(`${url}/image.raw`, { headers: range === undefined ? {} : { range } })
    const body = Buffer.from(await answer.body.arrayBuffer())
    const seconds = (performance.now() - startedMs) / 1000
    t.ok(body.equals(bytes), `${range ?? 'the whole file'}: its bytes`)
    // A lower bound only (a loaded machine is slower, never faster): no burst at the start.
    t.ok(seconds >= (bytes.length / 1_000_000) * 0.99, `${bytes.length} bytes at 1 MB/s took ${seconds.toFixed(2)} s`)
  }
})
