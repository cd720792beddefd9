import t from 'tap'
import { readFileSync } from 'node:fs'
import { GENERATED_PATH, schemaValidatorsSource } from '../../../scripts/schema-validators.js'

const root = new URL('../../../', import.meta.url)

t.test('the committed validators are Ajv\'s code for the schemas as they are (else: make validators)', async (t) => {
  const committed = readFileSync(new URL(GENERATED_PATH, root), 'utf8')
  t.equal(committed, schemaValidatorsSource())
})
