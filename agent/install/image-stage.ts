/**
 * Image stages: how the downloaded bytes become the image on the disk. Each stage is the download's
 * sink (it takes the slabs, already hashed upstream, and never sees the digest), then `end` (the
 * download is over), `verify` (the stage's own checks, and the image as it will lie on the disk),
 * `write` (all but the head), and `settle` after a failure. The install calls them in that order;
 * which stage runs is chosen once, by `chooseStage`.
 */
import type { Logger } from 'pino'
import type { ImageReader } from '../disk/planned-disk.js'
import type { DownloadSink } from '../download/index.js'
import type { StreamCompression } from '../image/stream-decoder.js'
import type { InstallRequest } from '../payload/install-request.js'
import type { InstallMode } from '../errors/installed-message.js'
import type { InstallEventListener } from '../report/progress.js'
import type { InstallSteps } from './install-steps.js'
import type { Target } from './target.js'

/** The image as the verify step sees it: its length on the disk and a reader of its bytes. */
export interface StagedImage {
  /** The raw image's size, or the qcow2's virtual size. */
  imageBytes: number
  /** Reads bytes within [0, imageBytes) of the image as it will lie on the disk. */
  read: ImageReader
  /** A raw image downloaded compressed: how (the downloaded file's size is not the image's). */
  compression?: StreamCompression | undefined
}

export interface ImageStage extends DownloadSink {
  /** Where the bytes went: memory, or straight to the disk (a raw image over the budget switches during the download). */
  readonly mode: InstallMode
  /** The download is over: writes under way drained and synced, what the last bytes allow checked. */
  end (): Promise<void>
  /** The stage's own checks (the bytes' type and format, the size against the disk); the image to plan the tables on. */
  verify (): Promise<StagedImage>
  /** Writes the image but its head (held back by the target), and syncs; a streamed image is already written. */
  write (): Promise<void>
  /** After a failure: waits for the writes under way, ignoring their errors (no write lands after the install ends). */
  settle (): Promise<void>
}

/** What every stage works with. */
export interface StageContext {
  request: InstallRequest
  target: Target
  memoryLimitBytes: number
  steps: InstallSteps
  emit: InstallEventListener
  signal: AbortSignal | undefined
  logger: Logger | undefined
}
