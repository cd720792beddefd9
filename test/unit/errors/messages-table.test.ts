import t from 'tap'
import { readFileSync } from 'node:fs'
import { installErrorDeclarations } from '../../../agent/errors/install-error-declarations.js'
import { templateOf, Placeholder, shown } from '../../../agent/errors/message-declaration.js'
import { MESSAGE_SECTIONS, resultMessagesTable } from '../../../scripts/messages-table.js'

t.test('docs/result-messages.md holds the table the declarations make', async (t) => {
  const doc = readFileSync(new URL('../../../docs/result-messages.md', import.meta.url), 'utf8')
  const begin = doc.indexOf('<!-- messages:begin -->')
  const end = doc.indexOf('<!-- messages:end -->')
  t.ok(begin >= 0 && end > begin, 'markers present')
  t.equal(doc.slice(begin + '<!-- messages:begin -->'.length, end).trim(), resultMessagesTable(),
    'the table is current (regenerate it with: make docs-messages)')
})

t.test('each template is its message function called with its placeholders', async (t) => {
  const codes = MESSAGE_SECTIONS.flatMap((section) => Object.keys(section))
  t.equal(new Set(codes).size, codes.length, 'no code declared twice (the install\'s and the service\'s included)')
  for (const section of MESSAGE_SECTIONS) {
    for (const [code, declaration] of Object.entries(section)) {
      const template = templateOf(declaration)
      for (const name of declaration.placeholders) t.ok(template.includes(name), `${code}: ${name} stands in the template`)
      t.notMatch(template, /undefined|\[object|NaN/, `${code}: every argument is shown as its placeholder`)
    }
  }
  t.equal(templateOf(installErrorDeclarations.CHECKSUM_MISMATCH), 'Bad TYPE for downloaded file, got: HEX while expecting HEX.')
  t.equal(
    templateOf(installErrorDeclarations.EFI_BOOTLOADER_NOT_FOUND),
    'Bad efiBootloaderPath, PATH REASON.',
    'a phrase chosen by an argument is one placeholder',
  )
})

t.test('shown: a value in words, a placeholder as it stands', async (t) => {
  t.equal(shown<number>(3, (n) => `${n + 1}`), '4')
  t.equal(shown<number>(new Placeholder('N'), (n) => `${n + 1}`), 'N')
  t.equal(`${new Placeholder('DISK')}`, 'DISK')
})
