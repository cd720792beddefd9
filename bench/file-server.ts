/**
 * The loopback file server (dist/scripts/serve-files.js) as a child process: started on port 0,
 * its URL read from its first line, stopped by its pid.
 */
import { spawn, type ChildProcess } from 'node:child_process'

const START_TIMEOUT_MS = 10_000 // 10 s
const STOP_TIMEOUT_MS = 5_000 // 5 s, then SIGKILL

export interface FileServer {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  baseUrl: string
  pid: number
  stop: () => Promise<void>
}

/** `args`: more of serve-files' options (e.g. `--rate BYTES_PER_SEC`). */
export async function startFileServer (options: { script: string; dir: string; cwd: string; args?: string[] }): Promise<FileServer> {
  const argv = [options.script, options.dir, '--port', '0', ...options.args ?? []]
  const child: ChildProcess = spawn(process.execPath, argv, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'inherit'] })
  const pid = child.pid
  const exited = new Promise<void>((resolve) => { child.once('exit', () => resolve()) })
  const stop = async (): Promise<void> => {
    if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return
    process.kill(pid, 'SIGTERM')
    const timer = setTimeout(() => { if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL') }, STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }
  try {
    if (pid === undefined || child.stdout === null) throw new Error(`could not start ${options.script}`)
    const stdout = child.stdout
    const baseUrl = await new Promise<string>((resolve, reject) => {
      let text = ''
      const timer = setTimeout(() => reject(new Error(`${options.script} did not print its URL within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS)
      stdout.setEncoding('utf8')
      stdout.on('data', (more: string) => {
        text += more
        const match = /^listening (http:\/\/127\.0\.0\.1:\d+)\s*$/m.exec(text)
        if (match?.[1] !== undefined) {
          clearTimeout(timer)
          resolve(match[1])
        }
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`${options.script} exited (${signal ?? code ?? 'unknown'}) before listening`))
      })
    })
    stdout.resume() // nothing more is expected; never let its pipe fill
    return { baseUrl, pid, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
