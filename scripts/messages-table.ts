// The Markdown table of result messages that docs/result-messages.md holds (a test keeps them equal),
// made from the declarations: the template column is each message function called with placeholders.
import { apiErrorDeclarations } from '../agent/errors/api-error-declarations.js'
import { installErrorDeclarations } from '../agent/errors/install-error-declarations.js'
import { installedDeclaration } from '../agent/errors/installed-message.js'
import { templateOf, type AnyMessageDeclaration } from '../agent/errors/message-declaration.js'

/** The table's rows in order: the success, the install's failures (OVH's first), the service's refusals. */
export const MESSAGE_SECTIONS: ReadonlyArray<Readonly<Record<string, AnyMessageDeclaration>>> = [
  installedDeclaration,
  installErrorDeclarations,
  apiErrorDeclarations,
]

export function resultMessagesTable (): string {
  const escape = (text: string): string => text.replaceAll('|', '\\|')
  const rows = MESSAGE_SECTIONS.flatMap((section) => Object.entries(section)).map(([code, declaration]) =>
    `| \`${code}\` | ${declaration.ovh ? 'OVH' : 'agent'} | ${'``'} ${escape(templateOf(declaration))} ${'``'} | ${escape(declaration.when)} |`)
  return ['| code | from | message | when |', '| --- | --- | --- | --- |', ...rows].join('\n')
}
