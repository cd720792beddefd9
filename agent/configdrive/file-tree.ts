import type { ConfigDriveFile } from './config-drive-files.js'

/** A directory of the tree both writers lay out: children sorted by name (UTF-16 code units). */
export interface TreeDirectory {
  kind: 'directory'
  name: string
  children: TreeNode[]
}

export interface TreeFile {
  kind: 'file'
  name: string
  data: Buffer
}

export type TreeNode = TreeDirectory | TreeFile

/**
 * Longest name component accepted (characters). Joliet stores at most 64 UCS-2 characters per name
 * (genisoimage truncates beyond that) and a Rock Ridge NM entry of this size keeps every directory
 * record under its 255-byte limit; ConfigDrive names are far shorter.
 */
export const MAX_NAME_CHARS = 64

/** Nesting depth accepted (openstack/latest/x is 3). */
const MAX_DEPTH = 8

/**
 * Characters no writer can store in a name: control characters, the separators, and those FAT
 * (`"*:<>?\|`) and Joliet (`*:;?\`) forbid.
 */
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[\u0000-\u001f\u007f"*/:;<>?\\|]/

function checkName (name: string, path: string): void {
  if (name.length === 0) throw new RangeError(`ConfigDrive path ${JSON.stringify(path)} has an empty component`)
  if (name === '.' || name === '..') throw new RangeError(`ConfigDrive path ${JSON.stringify(path)} has a "${name}" component`)
  if ([...name].length > MAX_NAME_CHARS) {
    throw new RangeError(`ConfigDrive path ${JSON.stringify(path)} has a component longer than ${MAX_NAME_CHARS} characters`)
  }
  if (FORBIDDEN.test(name)) throw new RangeError(`ConfigDrive path ${JSON.stringify(path)} has a character FAT or Joliet can not store`)
  // FAT drops trailing dots and spaces; UCS-2 (Joliet, FAT long names) has no surrogate pairs.
  if (/[. ]$/.test(name)) throw new RangeError(`ConfigDrive path ${JSON.stringify(path)} has a component ending in a dot or a space`)
  if (/[\ud800-\udfff]/.test(name)) throw new RangeError(`ConfigDrive path ${JSON.stringify(path)} has a character outside the Basic Multilingual Plane`)
}

/**
 * Builds the directory tree of `files`, refusing paths that the filesystems can not all hold the
 * same way: duplicates (case-insensitively, as FAT compares), a file that is also a directory,
 * names that FAT or Joliet can not store.
 */
export function buildTree (files: readonly ConfigDriveFile[]): TreeDirectory {
  const root: TreeDirectory = { kind: 'directory', name: '', children: [] }
  for (const file of files) {
    const parts = file.path.split('/')
    if (parts.length > MAX_DEPTH) throw new RangeError(`ConfigDrive path ${JSON.stringify(file.path)} is nested deeper than ${MAX_DEPTH}`)
    for (const part of parts) checkName(part, file.path)
    let dir = root
    for (const [index, part] of parts.entries()) {
      const last = index === parts.length - 1
      const existing = dir.children.find((child) => child.name.toUpperCase() === part.toUpperCase())
      if (last) {
        if (existing !== undefined) throw new RangeError(`ConfigDrive path ${JSON.stringify(file.path)} is given twice (names are compared case-insensitively)`)
        dir.children.push({ kind: 'file', name: part, data: file.data })
      } else if (existing === undefined) {
        const created: TreeDirectory = { kind: 'directory', name: part, children: [] }
        dir.children.push(created)
        dir = created
      } else if (existing.kind === 'directory' && existing.name === part) {
        dir = existing
      } else {
        throw new RangeError(`ConfigDrive path ${JSON.stringify(file.path)} clashes with another file or directory`)
      }
    }
  }
  sortTree(root)
  return root
}

function sortTree (dir: TreeDirectory): void {
  dir.children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  for (const child of dir.children) if (child.kind === 'directory') sortTree(child)
}
