/**
 * The agent's commands as Ironic sees them (ironic-python-agent's extensions/base.py): each command
 * run gets a result, kept in order, that `GET /v1/commands/` lists and the conductor polls. A sync
 * command's result is final when the POST answers; an async one answers RUNNING and ends later.
 * One command at a time: a command arriving while the last one runs is refused as "Agent is busy"
 * (HTTP 409), which the conductor retries on the next heartbeat.
 *
 * A result never carries the command's parameters (they hold image URLs, download headers and the
 * config drive): ironic-python-agent stopped serializing them too.
 */
import { randomUUID } from 'node:crypto'

export type CommandStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED'

/** ironic-python-agent's RESTError as serialized: Ironic shows `details` in the node's last_error. */
export interface CommandError {
  type: string
  code: number
  message: string
  details: string
}

/** One command's result, as `GET /v1/commands/` lists it. */
export interface CommandResult {
  id: string
  command_name: string
  command_status: CommandStatus
  command_error: CommandError | null
  command_result: unknown
}

/** An error a command throws to fail with these fields (else: CommandExecutionError, code 500). */
export class AgentCommandError extends Error {
  constructor (readonly type: string, readonly details: string, readonly code = 500, message = 'Command execution failed') {
    super(message)
  }
}

/** A refusal of the request itself (unknown command, bad parameters, busy): an HTTP error with IPA's fault body. */
export class AgentRequestError extends Error {
  constructor (readonly statusCode: number, message: string) {
    super(message)
  }
}

export type CommandRun = (signal: AbortSignal) => Promise<unknown>

/** How many results are kept (a deploy runs about six commands; cleaning a few more). */
const MAX_RESULTS = 100

export class CommandLog {
  private readonly results = new Map<string, CommandResult>()
  private readonly running = new Map<string, Promise<void>>()
  private readonly aborts = new Set<AbortController>()

  /** Called when an async command ends (the agent heartbeats at once, so that Ironic moves on). */
  constructor (private readonly onAsyncDone: (result: CommandResult) => void = () => {}) {}

  list (): CommandResult[] {
    return [...this.results.values()].map((result) => ({ ...result }))
  }

  get (id: string): CommandResult | undefined {
    const result = this.results.get(id)
    return result === undefined ? undefined : { ...result }
  }

  /** The last command, if it is still running. */
  busyWith (): CommandResult | undefined {
    const last = [...this.results.values()].pop()
    return last?.command_status === 'RUNNING' ? last : undefined
  }

  /** Runs a command to its end; the result is final. */
  async runSync (name: string, run: CommandRun): Promise<CommandResult> {
    const result = this.start(name)
    await this.settle(result, run)
    return { ...result }
  }

  /** Starts a command; its result is RUNNING until it ends. `wait` resolves when it has. */
  runAsync (name: string, run: CommandRun): { result: CommandResult; done: Promise<void> } {
    const result = this.start(name)
    const done = this.settle(result, run).then(() => {
      this.running.delete(result.id)
      this.onAsyncDone({ ...result })
    })
    this.running.set(result.id, done)
    return { result: { ...result }, done }
  }

  /** Waits for a running command (`?wait=true`). */
  async wait (id: string): Promise<CommandResult | undefined> {
    await this.running.get(id)
    return this.get(id)
  }

  /** Aborts whatever runs (the agent stopping), and waits for it to end. */
  async abortAll (): Promise<void> {
    for (const controller of this.aborts) controller.abort(new Error('the agent is stopping'))
    await Promise.all([...this.running.values()])
  }

  private start (name: string): CommandResult {
    const busy = this.busyWith()
    if (busy !== undefined) throw new AgentRequestError(409, `Agent is busy: executing command ${busy.command_name}`)
    const result: CommandResult = { id: randomUUID(), command_name: name, command_status: 'RUNNING', command_error: null, command_result: null }
    this.results.set(result.id, result)
    while (this.results.size > MAX_RESULTS) {
      const oldest = this.results.keys().next().value as string
      this.results.delete(oldest)
    }
    return result
  }

  private async settle (result: CommandResult, run: CommandRun): Promise<void> {
    const controller = new AbortController()
    this.aborts.add(controller)
    try {
      const value = await run(controller.signal)
      // IPA: a command returning a string answers { result: "<name>: <string>" }.
      result.command_result = typeof value === 'string' ? { result: `${result.command_name}: ${value}` } : value ?? null
      result.command_status = 'SUCCEEDED'
    } catch (err) {
      result.command_error = err instanceof AgentCommandError
        ? { type: err.type, code: err.code, message: err.message, details: err.details }
        : { type: 'CommandExecutionError', code: 500, message: 'Command execution failed', details: err instanceof Error ? err.message : String(err) }
      result.command_status = 'FAILED'
    } finally {
      this.aborts.delete(controller)
    }
  }
}
