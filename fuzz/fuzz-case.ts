import type { ChecksumType } from '../agent/payload/install-request.js'
import type { ConfigDriveFile } from '../agent/configdrive/config-drive-files.js'
import type { Behaviour } from './behaviour.js'

export type Family = 'http' | 'qcow2' | 'table' | 'iso'
export const FAMILIES: readonly Family[] = ['http', 'qcow2', 'table', 'iso']
/** The families whose cases are installs (`iso` cases are reads of an image, no install). */
export type InstallFamily = Exclude<Family, 'iso'>

/**
 * memory: the default; stream: `--stream`; over-budget: an image larger than a 1 MiB memory budget
 * (streamed: a raw one switches, a qcow2 streams from its first byte).
 */
export type InstallMode = 'memory' | 'stream' | 'over-budget'

/** One hostile input: what is served, how, and how it is installed. */
export interface FuzzCase {
  /** `FAMILY-INDEX`, e.g. `http-17`: with the run's seed, enough to make it again. */
  id: string
  family: InstallFamily
  index: number
  /** What was done to the input, for the report. */
  label: string
  /** The kind of case (the label without its numbers), for grouping breaks. */
  kind: string
  imageType: 'raw' | 'qcow2'
  /** The bytes the server holds. */
  served: Buffer
  /** The guest disk the served bytes stand for (raw: the same; qcow2: made by qemu-img when needed). */
  guest: () => Buffer | undefined
  behaviour: Behaviour
  mode: InstallMode
  checksumType: ChecksumType | undefined
  /** The server's answer is not the file (longer than announced, a redirect loop…): an install is a break. */
  mustFail: boolean
}

/** One hostile ISO 9660 image, read by readIso9660Files on the case worker (fuzz/iso-cases.ts). */
export interface IsoCase {
  id: string
  family: 'iso'
  index: number
  label: string
  kind: string
  image: Buffer
  /** The files an unchanged image must read back as (undefined: changed, any refusal is right). */
  expected: ConfigDriveFile[] | undefined
  mode: 'read'
}

export type AnyCase = FuzzCase | IsoCase
