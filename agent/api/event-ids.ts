/**
 * The ids of GET /install/events' events, and what a reconnecting client's `Last-Event-ID` says.
 *
 * An id is `JOB:RUN:SEQ`: the job the event is about (`idle` before any job; percent-encoded, so
 * no id can hold a line break or a colon of its own), this agent run's name (8 random hex digits),
 * and a number that grows by one with each event the run sends (a change sent to many streams is
 * numbered once). Ids are thus unique and increasing for the agent's lifetime, and an id from
 * before a restart is recognised as unknown.
 *
 * One thing only depends on the id a client sends back: a client whose last event was sent after
 * the current job ended (the job's `result`, or the `status` snapshot, result included, of a
 * stream opened after the end) has seen that end. It is answered 204 No Content, which tells
 * EventSource to stop reconnecting (WHATWG HTML §9.2.3, "fail the connection"). Any other id,
 * malformed, unknown or mid-job, counts as none: the client gets a fresh `status` snapshot, which
 * makes it whole whatever it missed, then the live events.
 */
import { randomBytes } from 'node:crypto'

/** The job part of the id of an event sent while no job ever ran. */
const NO_JOB = 'idle'

/** JOB (as encodeURIComponent leaves it), RUN, SEQ. */
const ID = /^([\w.!~*'()%-]+):([0-9a-f]{8}):([1-9][0-9]{0,15})$/

export class EventIds {
  /** This agent run's name, in every id. */
  readonly run: string
  private seq = 0
  /** The last job seen ended (its id part), and the number of the first id sent after its end. */
  private end: { job: string; seq: number } | undefined

  constructor (run: string = randomBytes(4).toString('hex')) {
    if (!/^[0-9a-f]{8}$/.test(run)) throw new RangeError(`bad run name ${JSON.stringify(run)}, expected: 8 hex digits`)
    this.run = run
  }

  /**
   * The id of the next event, about `jobId` (null: no job yet). `ended`: the event is sent after
   * the job ended (its result, or a snapshot of it ended); the first such id marks the end.
   */
  next (jobId: string | null, options: { ended?: boolean } = {}): string {
    const job = jobPart(jobId)
    this.seq++
    if (options.ended === true && this.end?.job !== job) this.end = { job, seq: this.seq }
    return `${job}:${this.run}:${this.seq}`
  }

  /**
   * True when `lastEventId` is the id of an event this run sent about the ended job `jobId`
   * after its end: the client has seen the result.
   */
  sawEnd (lastEventId: string | undefined, jobId: string): boolean {
    const id = this.parse(lastEventId)
    const end = this.end
    return id !== undefined && end !== undefined && end.job === jobPart(jobId) && id.job === end.job && id.seq >= end.seq
  }

  /** `{ job, seq }` of an id this run sent; undefined for anything else (malformed, another run's, not sent yet). */
  parse (text: string | undefined): { job: string; seq: number } | undefined {
    const match = text === undefined ? null : ID.exec(text)
    if (match === null) return undefined
    const [, job = '', run, digits = ''] = match
    const seq = Number(digits)
    if (run !== this.run || !Number.isSafeInteger(seq) || seq > this.seq) return undefined
    return { job, seq }
  }
}

function jobPart (jobId: string | null): string {
  return jobId === null || jobId === '' ? NO_JOB : encodeURIComponent(jobId)
}
