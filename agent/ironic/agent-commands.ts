/**
 * The commands an Ironic conductor sends its ramdisk agent, as ironic-python-agent names and
 * answers them, for a `direct` deploy of a whole-disk image and for metadata cleaning:
 *
 *   deploy.get_deploy_steps / clean.get_clean_steps   sync: the steps this agent offers
 *   deploy.execute_deploy_step                       async: write_image (the install) or erase_devices_metadata
 *   clean.execute_clean_step                         async: erase_devices_metadata
 *   standby.prepare_image                            async: the install (older conductors, and write_image's body)
 *   standby.get_partition_uuids                      sync: the disk's identifier and its EFI system partition
 *   image.install_bootloader                         async: checks the EFI loader the firmware will boot
 *   standby.sync, standby.power_off, standby.run_image, log.collect_system_logs
 *
 * The install is byoi-agent's (install/run-install: nothing written before every check passed, the
 * image never bootable unverified); a failure's details are its result message, which Ironic shows
 * in the node's last_error. Each command's parameters are read here; the disk is chosen per deploy
 * by the node's root device hints (instance_info's, else properties'), else the agent's --disk.
 */
import { constants, open } from 'node:fs/promises'
import type { Logger } from 'pino'
import { Disk } from '../disk/disk.js'
import { listPartitions } from '../disk/partition-list.js'
import { EFI_SYSTEM_GUID } from '../disk/efi-system-partition.js'
import { isInstallError, type InstallError } from '../errors/install-error.js'
import type { InstallRequest } from '../payload/install-request.js'
import type { InstallResult } from '../install/run-install.js'
import { AgentCommandError, AgentRequestError, type CommandLog, type CommandResult } from './command-log.js'
import { configDriveFromIronic } from './config-drive-source.js'
import { imageFromImageInfo, isRecord } from './image-info.js'

/** The hardware manager Ironic is told about (its steps are listed under this name). */
export const HARDWARE_MANAGER = 'ByoiAgentHardwareManager'
const HARDWARE_MANAGER_VERSION = '1.0'

export interface DeployDisk {
  path: string
  /** Why this disk, for the logs and the step's result: `--disk /dev/sdb`, `root device hints serial=X matched /dev/sdb`… */
  why: string
}

/** What the commands need from the machine; the CLI gives the real ones, tests their own. */
export interface AgentMachine {
  /** The deploy's disk: by these hints (Ironic's root_device) when given, else the agent's --disk. */
  chooseDisk: (hints: Record<string, unknown> | undefined) => Promise<DeployDisk>
  /** The disks erase_devices_metadata may erase (never one in use). */
  erasableDisks: () => Promise<string[]>
  /** Erases one disk's metadata (disk/erase-metadata). */
  eraseDisk: (path: string) => Promise<unknown>
  /** One install (install/run-install with the agent's journal, memory budget and tuning). */
  install: (request: InstallRequest, diskPath: string, options: InstallCall) => Promise<InstallResult>
  /** standby.power_off / run_image: after the answer, the machine powers off or reboots. */
  powerOff: () => Promise<void>
  reboot: () => Promise<void>
  /** log.collect_system_logs: a gzip'd tar of the agent's logs. */
  collectLogs: () => Promise<Buffer>
  insecure?: boolean
  logger?: Logger
}

export interface InstallCall {
  stream: boolean
  signal: AbortSignal
  onNote: (note: string) => void
}

interface Deployed {
  diskPath: string
  partitionUuids: PartitionUuids
}

/** standby.get_partition_uuids' answer for a whole-disk image (keys as ironic-python-agent spells them). */
export interface PartitionUuids {
  'root uuid'?: string
  'efi system partition uuid'?: string | null
  partitions?: Record<string, string>
}

type Params = Record<string, unknown>
type Handler = { mode: 'sync' | 'async'; run: (params: Params, signal: AbortSignal) => Promise<unknown> }

export class AgentCommands {
  private deployed: Deployed | undefined

  constructor (private readonly log: CommandLog, private readonly machine: AgentMachine) {}

  /** Runs `ext.command`; sync commands and `wait` answer once done. Throws AgentRequestError for the request itself. */
  async execute (name: string, params: Params, wait: boolean): Promise<CommandResult> {
    const dot = name.indexOf('.')
    if (dot <= 0 || dot === name.length - 1) throw new AgentRequestError(400, 'Invalid command: Command name must be of the form <extension>.<name>')
    const extension = name.slice(0, dot)
    const command = name.slice(dot + 1)
    const handlers = this.extensions()[extension]
    if (handlers === undefined) throw new AgentRequestError(404, `Not found: Extension with id ${extension} not found.`)
    const handler = handlers[command]
    if (handler === undefined) throw new AgentRequestError(400, `Invalid command: Command ${command} does not exist in extension ${extension}`)
    if (handler.mode === 'sync') return await this.log.runSync(command, async (signal) => await handler.run(params, signal))
    const { result, done } = this.log.runAsync(command, async (signal) => await handler.run(params, signal))
    if (!wait) return result
    await done
    return (this.log.get(result.id)) ?? result
  }

  private extensions (): Record<string, Record<string, Handler>> {
    return {
      deploy: {
        get_deploy_steps: { mode: 'sync', run: async () => ({ deploy_steps: { [HARDWARE_MANAGER]: DEPLOY_STEPS }, hardware_manager_version: versions() }) },
        execute_deploy_step: { mode: 'async', run: async (params, signal) => await this.executeStep(params, signal, 'deploy') },
      },
      clean: {
        get_clean_steps: { mode: 'sync', run: async () => ({ clean_steps: { [HARDWARE_MANAGER]: CLEAN_STEPS }, hardware_manager_version: versions() }) },
        execute_clean_step: { mode: 'async', run: async (params, signal) => await this.executeStep(params, signal, 'clean') },
      },
      standby: {
        prepare_image: { mode: 'async', run: async (params, signal) => await this.prepareImage(params.image_info, params.configdrive, nodeOf(params), signal) },
        get_partition_uuids: { mode: 'sync', run: async () => this.deployed?.partitionUuids ?? {} },
        sync: { mode: 'sync', run: async () => { await this.syncDisk(); return null } },
        power_off: { mode: 'async', run: async () => { await this.machine.powerOff(); return 'powering off' } },
        run_image: { mode: 'async', run: async () => { await this.machine.reboot(); return 'rebooting' } },
      },
      image: {
        install_bootloader: { mode: 'async', run: async (params) => await this.installBootloader(params) },
      },
      log: {
        collect_system_logs: { mode: 'sync', run: async () => ({ system_logs: (await this.machine.collectLogs()).toString('base64') }) },
      },
    }
  }

  /** deploy/clean execute_*_step: `step.step` with `step.args` (write_image's image_info and configdrive). */
  private async executeStep (params: Params, signal: AbortSignal, kind: 'deploy' | 'clean'): Promise<unknown> {
    const step = params.step
    if (!isRecord(step) || typeof step.step !== 'string') throw new AgentCommandError('InvalidCommandParamsError', `Malformed ${kind}_step, no "step" key`, 400)
    const args = isRecord(step.args) ? step.args : {}
    const node = nodeOf(params)
    let outcome: unknown
    if (step.step === 'write_image' && kind === 'deploy') {
      outcome = await this.prepareImage(args.image_info ?? params.image_info, args.configdrive ?? params.configdrive, node, signal)
    } else if (step.step === 'erase_devices_metadata') {
      outcome = await this.eraseMetadata()
    } else {
      const offered = (kind === 'deploy' ? DEPLOY_STEPS : CLEAN_STEPS).map((s) => s.step).join(', ')
      throw new AgentCommandError('UnknownStep', `${kind} step ${step.step} is not one byoi-agent runs (it offers ${offered})`, 400)
    }
    // The step echoed without its args (image_info's headers and password, the config drive): the
    // results are listed to anyone who asks, and Ironic compares only interface and step.
    const echoed = { interface: step.interface, step: step.step, ...(step.priority === undefined ? {} : { priority: step.priority }) }
    return kind === 'deploy' ? { deploy_result: outcome, deploy_step: echoed } : { clean_result: outcome, clean_step: echoed }
  }

  /** The install: image_info and the config drive read, the disk chosen, then byoi-agent's install. */
  private async prepareImage (imageInfo: unknown, configDriveValue: unknown, node: Params | undefined, signal: AbortSignal): Promise<string> {
    const logger = this.machine.logger
    this.deployed = undefined
    try {
      const fromImage = isRecord(imageInfo) && typeof imageInfo.node_uuid === 'string' ? imageInfo.node_uuid : 'unknown'
      const nodeUuid = typeof node?.uuid === 'string' ? node.uuid : fromImage
      const configDrive = await configDriveFromIronic(configDriveValue ?? (isRecord(imageInfo) ? imageInfo.configdrive : undefined), nodeUuid, {
        insecure: this.machine.insecure, signal, logger,
      })
      const image = imageFromImageInfo(imageInfo, configDrive)
      const disk = await this.machine.chooseDisk(rootDeviceHints(node))
      logger?.info({ disk: disk.path, why: disk.why, image: image.id }, 'deploy disk chosen')
      const notes = [disk.why]
      let result: InstallResult | undefined
      let lastFailure: InstallError | undefined
      for (const url of [image.request.imageUrl, ...image.moreUrls]) {
        try {
          const call = { stream: image.stream, signal, onNote: (note: string) => { notes.push(note) } }
          result = await this.machine.install({ ...image.request, imageUrl: url }, disk.path, call)
          break
        } catch (err) {
          // Another of image_info's URLs is tried only when this one could not be downloaded.
          if (!isInstallError(err) || (err.code !== 'DOWNLOAD_FAILED' && err.code !== 'DOWNLOAD_REFUSED') || signal.aborted) throw err
          lastFailure = err
          logger?.warn({ code: err.code }, 'image URL failed, trying the next one')
        }
      }
      if (result === undefined) throw lastFailure ?? new Error('no image URL')
      const partitionUuids = await readPartitionUuids(disk.path)
      this.deployed = { diskPath: disk.path, partitionUuids }
      logger?.info({ partitionUuids, notes }, 'image written')
      return `${result.message} ${notes.join(' ')} root_uuid=${partitionUuids['root uuid'] ?? 'none'}`
    } catch (err) {
      throw asCommandError(err)
    }
  }

  /** erase_devices_metadata on every disk this agent may write (none in use). */
  private async eraseMetadata (): Promise<string> {
    const disks = await this.machine.erasableDisks()
    if (disks.length === 0) throw new AgentCommandError('CleaningError', 'No disk to erase: every disk is in use, removable or virtual.')
    for (const disk of disks) {
      try {
        await this.machine.eraseDisk(disk)
      } catch (err) {
        const reason = isInstallError(err) ? err.message : (err as Error).message
        throw new AgentCommandError('CleaningError', `Could not erase the metadata of disk ${disk}: ${reason}`)
      }
    }
    return `metadata erased on ${disks.join(', ')}`
  }

  private async syncDisk (): Promise<void> {
    if (this.deployed === undefined) return
    const handle = await open(this.deployed.diskPath, constants.O_RDONLY)
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  }

  /**
   * install_bootloader for a whole-disk image: the image brings its boot loader, and byoi-agent
   * writes no firmware boot entry (the firmware boots the disk, or its \EFI\BOOT\BOOTX64.EFI); what
   * it checks is that the EFI system partition Ironic names is the disk's.
   */
  private async installBootloader (params: Params): Promise<string> {
    const deployed = this.deployed
    if (deployed === undefined) throw new AgentCommandError('CommandExecutionError', 'No image was written by this agent: nothing to boot.')
    const esp = params.efi_system_part_uuid
    const ours = deployed.partitionUuids['efi system partition uuid']
    if (typeof esp === 'string' && esp !== '' && esp.toLowerCase() !== (ours ?? '').toLowerCase()) {
      throw new AgentCommandError('CommandExecutionError', `The EFI system partition ${esp} is not on disk ${deployed.diskPath} (its is ${ours ?? 'absent'}).`)
    }
    const espSaid = ours === null || ours === undefined ? '' : ` (EFI system partition ${ours})`
    return `the whole-disk image on ${deployed.diskPath} brings its own boot loader${espSaid}; no boot entry written`
  }
}

/** The steps this agent offers: as ironic-python-agent's, write_image proxied by Ironic's own step (priority 0 here). */
const DEPLOY_STEPS = [
  { step: 'write_image', priority: 0, interface: 'deploy', reboot_requested: false, argsinfo: null },
  { step: 'erase_devices_metadata', priority: 0, interface: 'deploy', reboot_requested: false, argsinfo: null },
]
/** Metadata erase only (priority 99, as ironic-python-agent's): no full erase of hours. */
const CLEAN_STEPS = [
  { step: 'erase_devices_metadata', priority: 99, interface: 'deploy', reboot_requested: false, abortable: true },
]

function versions (): Record<string, string> {
  return { [HARDWARE_MANAGER]: HARDWARE_MANAGER_VERSION }
}

function nodeOf (params: Params): Params | undefined {
  return isRecord(params.node) ? params.node : undefined
}

/** The node's root device hints: instance_info's override properties' (as ironic-python-agent reads them). */
function rootDeviceHints (node: Params | undefined): Record<string, unknown> | undefined {
  const fromInstance = isRecord(node?.instance_info) ? node.instance_info.root_device : undefined
  const fromProperties = isRecord(node?.properties) ? node.properties.root_device : undefined
  const hints = isRecord(fromInstance) && Object.keys(fromInstance).length > 0 ? fromInstance : fromProperties
  return isRecord(hints) && Object.keys(hints).length > 0 ? hints : undefined
}

/** An install's failure as the command's error: its code as the type, its result message as the details Ironic shows. */
function asCommandError (err: unknown): AgentCommandError {
  if (err instanceof AgentCommandError) return err
  if (isInstallError(err)) return new AgentCommandError(err.code, err.message, 500, 'Deploy failed')
  return new AgentCommandError('CommandExecutionError', err instanceof Error ? err.message : String(err))
}

/**
 * What ironic-python-agent answers for a whole-disk image: `root uuid` is the disk identifier (the
 * MBR's 32-bit signature at byte 440, `0x` and 8 hex digits, as `hexdump` prints it; on a GPT
 * disk too), the EFI system partition's unique GUID, and every GPT partition's by number.
 */
export async function readPartitionUuids (diskPath: string): Promise<PartitionUuids> {
  const disk = await Disk.open(diskPath, { readOnly: true })
  try {
    const mbr = Buffer.alloc(512)
    await disk.read(mbr, 0)
    const list = await listPartitions(disk)
    const partitions: Record<string, string> = {}
    for (const partition of list.partitions) if (partition.uuid !== undefined) partitions[String(partition.number)] = partition.uuid.toLowerCase()
    const esp = list.partitions.find((partition) => partition.type !== undefined && 'gpt' in partition.type && partition.type.gpt === EFI_SYSTEM_GUID)
    return {
      'root uuid': `0x${mbr.readUInt32LE(440).toString(16).padStart(8, '0')}`,
      'efi system partition uuid': esp?.uuid?.toLowerCase() ?? null,
      partitions,
    }
  } finally {
    await disk.close()
  }
}
