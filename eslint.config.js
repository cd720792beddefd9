// @ts-check
import { readFileSync } from 'node:fs'
import { URL } from 'node:url'
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/** max-len's options (below): 160 characters, no exceptions (no line needs one: long texts and URLs are split). */
const MAX_LEN = { code: 160 }

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
  // Type-aware: the TypeScript files are linted with the types of the project tsconfig.json
  // (agent, test, bench, fuzz, scripts), so promises that nobody awaits are caught. `project`
  // rather than `projectService`: the same findings, ~15 % faster and 0.2 GB less here (and a .ts
  // file the tsconfig leaves out is an error, not linted against a default program).
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/ban-ts-comment': ['error', { 'ts-expect-error': 'allow-with-description' }],
      'no-console': 'off',
      // tap's t.test() (and test(), t.spawn()…) returns a promise tap itself tracks: the parent
      // waits for its subtests, and the promise only ever resolves. Every other promise is awaited,
      // handled, or voided where dropping it is deliberate.
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafePromises: [{ from: 'package', package: '@tapjs/core', name: 'PromiseWithSubtest' }],
      }],
      // Off: an async function without an await is deliberate here. Fastify plugins must be async
      // (a sync one with no `done` never loads), Disk/ImageReader-style interfaces return promises
      // and an async body turns a throw into a rejection, and tap callbacks may be async or not.
      '@typescript-eslint/require-await': 'off',
      // The docs' message templates are made by calling each message function with Placeholders,
      // whose toString is the capital word standing for the value (agent/errors/message-declaration).
      '@typescript-eslint/restrict-template-expressions': ['error', {
        allow: [
          { from: 'lib', name: ['Error', 'URL', 'URLSearchParams'] }, // the rule's default
          { from: 'file', name: 'Placeholder', path: 'agent/errors/message-declaration.ts' },
        ],
      }],
    },
  },
  ...layerRules(),
  // Plain JS (this file): no type information.
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  // Lines of at most 160 characters. ESLint's own max-len: deprecated
  // (formatting rules moved to ESLint Stylistic) but shipped until ESLint 11. With
  // @stylistic/eslint-plugin installed, this block becomes:
  //   import stylistic from '@stylistic/eslint-plugin'
  //   { …, plugins: { '@stylistic': stylistic }, rules: { '@stylistic/max-len': ['error', MAX_LEN] } }
  {
    files: ['**/*.ts', '**/*.js'],
    rules: { 'max-len': ['error', MAX_LEN] },
  },
)
