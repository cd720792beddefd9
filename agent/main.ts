#!/usr/bin/env node
import { runCli } from './cli.js'

// The process boundary: arguments, standard streams, signals and the exit code live here only.
// SIGINT/SIGTERM abort the signal: `install` cancels the install (the disk left untouched or
// unbootable), `serve` shuts down gracefully (no new job; the running one cancelled and waited
// for; the server closed). The handlers are `once`: a second identical signal ends the process at once.
const controller = new AbortController()
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => controller.abort(new Error(`${signal} received`)))
}
process.exitCode = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  signal: controller.signal,
})
