import { execFile } from 'node:child_process'

/**
 * Runs a command without a shell and resolves with its standard output once it exits 0. Otherwise rejects with an Error
 * whose message says why in one line: `COMMAND not found` when it could not be started, else its
 * standard error (or the exit or timeout); the child_process error is its cause.
 */
export async function runCommand (command: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err === null) {
        resolve(stdout)
        return
      }
      const { code, syscall } = err as { code?: unknown; syscall?: unknown }
      const notStarted = code === 'ENOENT' && typeof syscall === 'string' && syscall.startsWith('spawn')
      reject(new Error(notStarted ? `${command} not found` : stderr.trim().replaceAll('\n', ' ') || err.message, { cause: err }))
    })
  })
}
