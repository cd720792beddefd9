/**
 * Node module hooks that run the project's TypeScript as tap runs it (types stripped, nothing type-checked: `make
 * typecheck` does that), with esbuild instead of ts-node: ts-node loads the TypeScript compiler into every test process,
 * ~1 s of CPU each before a test starts, for ~120 test files and the agents some of them spawn.
 * `./x.js` imported from a .ts file resolves to `./x.ts` when only that exists (NodeNext's convention, as tsc and ts-node do).
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { transformSync } from 'esbuild'

// tsconfig.json's class-field semantics (target ES2022: [[Define]] fields); the syntax kept as written (target esnext:
// nothing of it needs lowering for Node 20, and `import … with { type: 'json' }` must reach Node as written).
const TSCONFIG = { compilerOptions: { target: 'ES2022', useDefineForClassFields: true, verbatimModuleSyntax: false } }

export async function resolve (specifier, context, next) {
  try {
    return await next(specifier, context)
  } catch (err) {
    const parent = context.parentURL ?? ''
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !/\.[cm]?js$/.test(specifier) || !parent.endsWith('.ts') || !/^\.{1,2}\//.test(specifier)) throw err
    return await next(specifier.replace(/\.([cm]?)js$/, '.$1ts'), context)
  }
}

export async function load (url, context, next) {
  if (!/\.[cm]?ts$/.test(url) || !url.startsWith('file:')) return await next(url, context)
  const path = fileURLToPath(url)
  const { code } = transformSync(readFileSync(path, 'utf8'), {
    loader: 'ts', format: 'esm', target: 'esnext', sourcemap: 'inline', sourcefile: path, tsconfigRaw: TSCONFIG,
  })
  return { format: 'module', source: code, shortCircuit: true }
}
