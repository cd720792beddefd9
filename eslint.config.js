// @ts-check
import { readFileSync } from 'node:fs'
import { URL } from 'node:url'
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/**
 * The layering of agent/ (layers.json, the "may import" column of docs/architecture.md; a test
 * keeps the two equal): what each folder may import from the others.
 */
const { layers } = JSON.parse(readFileSync(new URL('./layers.json', import.meta.url), 'utf8'))

/** One no-restricted-imports block per layer: any relative import of another layer it may not use. */
function layerRules () {
  return Object.entries(/** @type {Record<string, string[]>} */ (layers)).map(([layer, allowed]) => {
    const forbidden = Object.keys(layers).filter((other) => other !== layer && !allowed.includes(other))
    const files = layer === 'time-slice' ? ['agent/time-slice.ts'] : [`agent/${layer}/**/*.ts`]
    return {
      files,
      rules: {
        'no-restricted-imports': ['error', {
          patterns: forbidden.map((other) => ({
            regex: `^(\\.\\./)+${other}(/|\\.js$)`,
            message: `agent/${layer} may import only ${allowed.length === 0 ? 'nothing of agent/' : allowed.join(', ')} (docs/architecture.md, "may import").`,
          })),
        }],
      },
    }
  })
}

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', '.tap/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/ban-ts-comment': ['error', { 'ts-expect-error': 'allow-with-description' }],
      'no-console': 'off',
    },
  },
  ...layerRules(),
)
