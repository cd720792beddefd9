/**
 * GET /install/events: the status as Server-Sent Events (WHATWG HTML §9.2), written by hand on
 * the raw response.
 *
 * At once a `status` event with the whole status; then every change as it happens: `status` when
 * a job starts, `step`, `progress` (at most every 250 ms), `note`, and `result`, after which the
 * stream ends. A stream opened after the job ended gets `status` and `result` and ends. A comment
 * line every `heartbeatMs` keeps proxies from closing an idle stream. A client that stops reading
 * is dropped once 1 MiB waits for it, so it never holds the agent's memory.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsync } from 'fastify'
import type { InstallJobs, JobChange } from '../install/job-runner.js'

export interface EventsOptions {
  /** Time between keep-alive comments (default 15 s). */
  heartbeatMs?: number
}

/** Unread bytes after which a client is dropped. */
const MAX_BUFFERED_BYTES = 1024 * 1024 // 1 MiB

export function installEvents (jobs: InstallJobs, options: EventsOptions = {}): FastifyPluginAsync {
  const heartbeatMs = options.heartbeatMs ?? 15_000 // 15 s
  return async (app) => {
    const open = new Set<ServerResponse>()
    // On close, open streams end (else the server would wait for them forever).
    app.addHook('preClose', async () => {
      for (const res of open) res.end()
    })

    // No HEAD twin: a HEAD would hold a bodiless stream open until the job ends.
    app.get('/install/events', { exposeHeadRoute: false }, (request, reply) => {
      void reply.hijack()
      const res = reply.raw
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no', // nginx: do not buffer the stream
      })
      open.add(res)
      let unsubscribe = (): void => {}
      // unref: the open socket keeps the process alive, never this timer alone.
      const heartbeat = setInterval(() => send(': keep-alive\n\n'), heartbeatMs).unref()
      const end = (): void => {
        clearInterval(heartbeat)
        unsubscribe()
        open.delete(res)
        if (!res.writableEnded && !res.destroyed) res.end()
      }
      const send = (text: string): void => {
        if (res.writableEnded || res.destroyed) return
        res.write(text)
        if (res.writableLength > MAX_BUFFERED_BYTES) {
          request.log.warn('event stream client does not read: dropped')
          res.destroy()
        }
      }
      const event = (name: string, data: unknown): void => send(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`)
      res.on('close', end)

      const status = jobs.status()
      event('status', status)
      if ((status.state === 'done' || status.state === 'error') && status.result !== null) {
        event('result', { jobId: status.jobId, state: status.state, result: status.result })
        end()
        return
      }
      unsubscribe = jobs.subscribe((change: JobChange) => {
        switch (change.type) {
          case 'status': event('status', change.status); break
          case 'step': event('step', { jobId: change.jobId, ...change.step }); break
          case 'progress': event('progress', { jobId: change.jobId, ...change.progress }); break
          case 'note': event('note', { jobId: change.jobId, message: change.message }); break
          case 'result':
            event('result', { jobId: change.jobId, state: change.state, result: change.result })
            end()
            break
        }
      })
    })
  }
}
