import { isInstallError } from '../../agent/errors/install-error.js'
import type t from 'tap'

/** The type of the `t` a subtest callback receives (tap's overloads make it long to spell). */
export type TapTest = Parameters<Parameters<typeof t.test>[0]>[0]

/** Awaits `promise`, expecting an InstallError with `code`; returns its message for exact checks. */
export async function expectInstallError (t: TapTest, promise: Promise<unknown>, code: string): Promise<string> {
  try {
    await promise
  } catch (err) {
    t.ok(isInstallError(err), 'an InstallError')
    t.equal((err as { code: string }).code, code)
    return (err as Error).message
  }
  t.fail(`expected ${code}`)
  return ''
}
