// Rewrites the table between the markers of docs/result-messages.md from agent/report (run: make docs-messages).
import { readFileSync, writeFileSync } from 'node:fs'
import { resultMessagesTable } from '../agent/report/messages-table.js'

const path = new URL('../../docs/result-messages.md', import.meta.url)
const doc = readFileSync(path, 'utf8')
const begin = '<!-- messages:begin -->'
const end = '<!-- messages:end -->'
const i = doc.indexOf(begin)
const j = doc.indexOf(end)
if (i < 0 || j < i) throw new Error('markers not found in docs/result-messages.md')
writeFileSync(path, `${doc.slice(0, i + begin.length)}\n${resultMessagesTable()}\n${doc.slice(j)}`)
