/** A bench suite: its files prepared, its contenders, and what the doc says about it. */
import type { SuiteText } from './bench-report.js'
import type { Contender } from './contender.js'

export interface SuiteEnv {
  /** The repository: cwd of every run. */
  root: string
  /** build/bench/: the suites' files, served by the loopback file server. */
  benchDir: string
  /** The file server's `http://127.0.0.1:PORT` serving benchDir. */
  baseUrl: string
  /** dist/agent/main.js. */
  agentMain: string
  /** `--baseline`: another build's dist/agent/main.js, run beside each agent contender. */
  baselineMain?: string
}

export interface PreparedSuite {
  text: SuiteText
  /** What MiB/s counts per run: the image's bytes, or a qcow2's guest (virtual) bytes. */
  bytesPerRun: number
  contenders: Contender[]
  /** Files the contenders read: read once before the runs so that all find them in the page cache. */
  cachedFiles: string[]
  /** After the runs (temporary files, the disks). */
  cleanup: () => Promise<void>
}

export interface Suite {
  id: string
  prepare: (env: SuiteEnv) => Promise<PreparedSuite>
}
