/**
 * GET /install/events: the status as Server-Sent Events (WHATWG HTML §9.2), written by hand on
 * the raw response.
 *
 * At once a `retry` field (how long EventSource waits before reconnecting) and a `status` event
 * with the whole status; then every change as it happens: `status` when a job starts, `step`,
 * `progress` (at most every 200 ms), `note`, and `result`, after which the stream ends. A stream
 * opened after the job ended gets `status` and `result` and ends. Every event has an id
 * (api/event-ids): a reconnect whose `Last-Event-ID` shows the client saw the current job's end
 * is answered 204 No Content, so EventSource stops reconnecting; any other reconnect is a fresh
 * stream, its `status` snapshot making up for whatever the client missed.
 *
 * A change is numbered and serialized once, whatever the number of streams. A comment line every
 * `heartbeatMs` keeps proxies from closing an idle stream. A client that stops reading is dropped
 * once 1 MiB waits for it, so it never holds the agent's memory.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsync } from 'fastify'
import type { InstallJobs, JobChange } from '../service/job-runner.js'
import { EventIds } from './event-ids.js'

export interface EventsOptions {
  /** Time between keep-alive comments (default 15 s). */
  heartbeatMs?: number
  /** The reconnection time sent to clients (default 2 s). */
  retryMs?: number
  /** Numbers the events (default: a new EventIds; tests give one with a known run name). */
  ids?: EventIds
}

/** Unread bytes after which a client is dropped. */
const MAX_BUFFERED_BYTES = 1024 * 1024 // 1 MiB

interface Stream {
  send: (text: string) => void
  end: () => void
}

export function installEvents (jobs: InstallJobs, options: EventsOptions = {}): FastifyPluginAsync {
  const heartbeatMs = options.heartbeatMs ?? 15_000 // 15 s
  const retryMs = options.retryMs ?? 2_000 // 2 s
  const ids = options.ids ?? new EventIds()
  return async (app) => {
    const streams = new Set<Stream>()
    // One subscription for all the streams, while any is open: each change is numbered once.
    let unsubscribe: (() => void) | undefined
    const onChange = (change: JobChange): void => {
      const text = changeText(ids, change)
      for (const stream of [...streams]) {
        stream.send(text)
        if (change.type === 'result') stream.end()
      }
    }
    // On close, open streams end (else the server would wait for them forever).
    app.addHook('preClose', async () => {
      for (const stream of [...streams]) stream.end()
    })

    // No HEAD twin: a HEAD would hold a bodiless stream open until the job ends.
    app.get('/install/events', { exposeHeadRoute: false }, (request, reply) => {
      const status = jobs.status()
      const ended = (status.state === 'done' || status.state === 'error') && status.result !== null
      const lastEventId = request.headers['last-event-id']
      if (ended && status.jobId !== null && ids.sawEnd(typeof lastEventId === 'string' ? lastEventId : undefined, status.jobId)) {
        // The client saw this job's result: 204 tells EventSource to stop reconnecting.
        void reply.code(204).header('cache-control', 'no-store').send()
        return
      }

      void reply.hijack()
      const res: ServerResponse = reply.raw
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no', // nginx: do not buffer the stream
      })
      // unref: the open socket keeps the process alive, never this timer alone.
      const heartbeat = setInterval(() => stream.send(': keep-alive\n\n'), heartbeatMs).unref()
      const stream: Stream = {
        send: (text) => {
          if (res.writableEnded || res.destroyed) return
          res.write(text)
          if (res.writableLength > MAX_BUFFERED_BYTES) {
            request.log.warn('event stream client does not read: dropped')
            res.destroy()
          }
        },
        end: () => {
          clearInterval(heartbeat)
          streams.delete(stream)
          if (streams.size === 0 && unsubscribe !== undefined) {
            unsubscribe()
            unsubscribe = undefined
          }
          if (!res.writableEnded && !res.destroyed) res.end()
        },
      }
      res.on('close', stream.end)

      stream.send(`retry: ${retryMs}\n` + eventText(ids.next(status.jobId, { ended }), 'status', JSON.stringify(status)))
      if (ended) {
        stream.send(eventText(ids.next(status.jobId, { ended }), 'result', JSON.stringify({ jobId: status.jobId, state: status.state, result: status.result })))
        stream.end()
        return
      }
      streams.add(stream)
      unsubscribe ??= jobs.subscribe(onChange)
    })
  }
}

/** A change as the text of its event, with the next id. */
function changeText (ids: EventIds, change: JobChange): string {
  switch (change.type) {
    case 'status': return eventText(ids.next(change.status.jobId), 'status', JSON.stringify(change.status))
    case 'step': return eventText(ids.next(change.jobId), 'step', JSON.stringify({ jobId: change.jobId, ...change.step }))
    case 'progress': return eventText(ids.next(change.jobId), 'progress', JSON.stringify({ jobId: change.jobId, ...change.progress }))
    case 'note': return eventText(ids.next(change.jobId), 'note', JSON.stringify({ jobId: change.jobId, message: change.message }))
    case 'result': {
      const data = JSON.stringify({ jobId: change.jobId, state: change.state, result: change.result })
      return eventText(ids.next(change.jobId, { ended: true }), 'result', data)
    }
  }
}

/** One event (JSON text holds no line break, so `data` is one line). */
function eventText (id: string, name: string, data: string): string {
  return `id: ${id}\nevent: ${name}\ndata: ${data}\n\n`
}
