import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
// layers.json holds the layering eslint.config.js enforces; docs/architecture.md shows it.
import layering from '../../layers.json' with { type: 'json' }

const root = join(import.meta.dirname, '..', '..')

t.test('docs/architecture.md\'s "may import" column is the layering lint enforces', async (t) => {
  const doc = readFileSync(join(root, 'docs', 'architecture.md'), 'utf8')
  const shown: Record<string, string[]> = {}
  for (const match of doc.matchAll(/^\| `([a-z-]+)(\/|\.ts)` \| ([^|]+) \|/gm)) {
    const [, name, , imports] = match as unknown as [string, string, string, string]
    shown[name] = imports.trim() === 'nothing' ? [] : imports.split(',').map((s) => s.trim())
  }
  t.same(shown, layering.layers)
})
