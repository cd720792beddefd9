import { resultMessages } from './install-error.js'

/** The Markdown table of result messages that docs/result-messages.md holds (a test keeps them equal). */
export function resultMessagesTable (): string {
  const escape = (text: string): string => text.replaceAll('|', '\\|')
  const rows = Object.entries(resultMessages).map(([code, entry]) =>
    `| \`${code}\` | ${entry.ovh ? 'OVH' : 'agent'} | ${'``'} ${escape(entry.template)} ${'``'} | ${escape(entry.when)} |`)
  return ['| code | from | message | when |', '| --- | --- | --- | --- |', ...rows].join('\n')
}
