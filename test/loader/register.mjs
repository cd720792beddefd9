// The tests' TypeScript loader: registers esbuild-hooks.mjs (see there).
import { register } from 'node:module'

register('./esbuild-hooks.mjs', import.meta.url)
