// Rewrites the table between the markers of docs/result-messages.md from agent/report (run: make docs-messages).
import { resultMessagesTable } from '../agent/report/messages-table.js'
import { rewriteMarked } from './doc-markers.js'

rewriteMarked(new URL('../../docs/result-messages.md', import.meta.url), 'messages', resultMessagesTable())
