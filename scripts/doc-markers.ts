// Generated parts of docs/: the text between a begin and an end marker line, rewritten in place.
import { readFileSync, writeFileSync } from 'node:fs'

/** Replaces what stands between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in the file at `path`. */
export function rewriteMarked (path: string | URL, name: string, text: string): void {
  const doc = readFileSync(path, 'utf8')
  const begin = `<!-- ${name}:begin -->`
  const end = `<!-- ${name}:end -->`
  const i = doc.indexOf(begin)
  const j = doc.indexOf(end)
  if (i < 0 || j < i) throw new Error(`${name} markers not found in ${String(path)}`)
  writeFileSync(path, `${doc.slice(0, i + begin.length)}\n${text}\n${doc.slice(j)}`)
}
