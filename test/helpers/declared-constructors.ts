/**
 * The check that a set of constructors (`errors`, `apiErrors`) is made from its declarations: one
 * constructor per declared code and one declaration per constructor, and each constructor, called
 * with the test's arguments, makes an error with the declared code, the message its declaration's
 * function writes for those arguments, and the cause when the declaration takes one.
 */
import type { AnyErrorDeclaration } from '../../agent/errors/message-declaration.js'
import type { TapTest } from './tap.js'

export interface MadeError {
  code: string
  message: string
  cause?: unknown
  toJSON: () => { code: string; message: string }
}

/** The test's arguments for each constructor: its message's, then a cause when the declaration takes one. */
export type ConstructorSamples<C> = { readonly [Name in keyof C]: C[Name] extends (...args: infer A) => unknown ? A : never }

export function checkDeclaredConstructors (t: TapTest, options: {
  declarations: Readonly<Record<string, AnyErrorDeclaration>>
  constructors: object
  samples: Readonly<Record<string, readonly unknown[]>>
  /** Also checks each error made, e.g. its class and HTTP status. */
  check: (t: TapTest, made: MadeError, code: string, declaration: AnyErrorDeclaration) => void
}): void {
  const { declarations, constructors, samples } = options
  const declaredNames = Object.values(declarations).map((d) => d.constructorName)
  t.same([...new Set(declaredNames)].sort(), [...declaredNames].sort(), 'no two codes share a constructor name')
  t.same(Object.keys(constructors).sort(), [...declaredNames].sort(), 'one constructor per declared code, no constructor without a declaration')
  t.same(Object.keys(samples).sort(), Object.keys(constructors).sort(), 'every constructor is called below')
  for (const [code, declaration] of Object.entries(declarations)) {
    t.test(`${code}: ${declaration.constructorName}()`, async (t) => {
      const make: unknown = Reflect.get(constructors, declaration.constructorName)
      const args = samples[declaration.constructorName]
      if (typeof make !== 'function' || args === undefined) {
        t.fail(`no constructor ${declaration.constructorName} for ${code}`)
        return
      }
      const messageArgs = args.slice(0, declaration.placeholders.length) as never[]
      t.ok(args.length <= declaration.placeholders.length + (declaration.withCause === true ? 1 : 0), 'no argument beyond the message\'s and the cause')
      const made = (make as (...a: readonly unknown[]) => MadeError)(...args)
      t.equal(made.code, code, 'the declared code')
      t.equal(made.message, declaration.message(...messageArgs), 'the message the declaration writes')
      t.same(made.toJSON(), { code, message: made.message }, 'toJSON: code and message only')
      const cause = declaration.withCause === true ? args[declaration.placeholders.length] : undefined
      t.equal(made.cause, cause, declaration.withCause === true ? 'the cause kept' : 'no cause')
      options.check(t, made, code, declaration)
    })
  }
}
