// Rewrites the table between the markers of docs/result-messages.md from the declarations (run: make docs-messages).
import { resultMessagesTable } from './messages-table.js'
import { rewriteMarked } from './doc-markers.js'

rewriteMarked(new URL('../../docs/result-messages.md', import.meta.url), 'messages', resultMessagesTable())
