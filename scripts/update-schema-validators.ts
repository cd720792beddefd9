// Rewrites agent/payload/schema-validators.generated.ts from schemas/ (run: make validators).
import { writeFileSync } from 'node:fs'
import { GENERATED_PATH, schemaValidatorsSource } from './schema-validators.js'

const root = new URL('../../', import.meta.url) // dist/scripts/ → the repository
writeFileSync(new URL(GENERATED_PATH, root), schemaValidatorsSource())
