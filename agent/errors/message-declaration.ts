/**
 * How a message is declared: once per code, with everything said of it. The message function is
 * the one place its words are written; the constructors (`errors.*`, `apiErrors.*`) and the
 * template that docs/result-messages.md shows are both made from it, the template by calling it
 * with placeholders (capitals standing for the values: URL, DISK, N…) instead of values.
 */

/** A capital word standing for a value in the docs' template (URL, DISK, N…). */
export class Placeholder {
  readonly #name: string

  constructor (name: string) {
    this.#name = name
  }

  toString (): string {
    return this.#name
  }
}

/** A message argument: its value, or, when the docs' template is made, the Placeholder standing for it. */
export type Shown<T> = T | Placeholder

/** `value` in the words `show` gives it, or the placeholder standing for it (a phrase chosen by the value is one placeholder). */
export function shown<T> (value: Shown<T>, show: (value: T) => string): string {
  return value instanceof Placeholder ? value.toString() : show(value)
}

/** A message with what the docs say of it. `Args` are the message's arguments, each a `Shown<T>`. */
export interface MessageDeclaration<Args extends unknown[]> {
  /** OVH's own text, kept word for word ("OVH" in the docs), or the agent's ("agent"). */
  readonly ovh: boolean
  /** When it is given: the docs' last column. */
  readonly when: string
  /** The message's words, the only place they are written. */
  readonly message: (...args: Args) => string
  /** What stands for each argument in the docs' template, in order. */
  readonly placeholders: { readonly [K in keyof Args]-?: string }
}

/** An error's declaration: its message, the name of the constructor made from it, the HTTP status the service answers it with. */
export interface ErrorDeclaration<Args extends unknown[]> extends MessageDeclaration<Args> {
  /** The constructor's name (`errors.downloadFailed`, `apiErrors.busy`). */
  readonly constructorName: string
  /** The service's answer with this error; absent for a failure that is never an answer (500 if one reaches the service: a bug). */
  readonly status?: number
  /** The constructor takes, after the message's arguments, the underlying error (for the log, never shown). */
  readonly withCause?: boolean
}

/** What any declaration is, whatever its arguments. */
export type AnyMessageDeclaration = MessageDeclaration<never[]>
export type AnyErrorDeclaration = ErrorDeclaration<never[]>

type ArgsOf<D> = D extends { readonly message: (...args: infer A) => string } ? A : never

/**
 * The check that `declareMessages` and `declareErrors` make of each entry: one placeholder per argument, and every
 * argument able to be one (`Shown<T>`), so that the template can be made.
 */
type Checked<D> = {
  readonly [C in keyof D]: Omit<D[C], 'placeholders'> & { readonly placeholders: PlaceholderNames<ArgsOf<D[C]>> }
}

type PlaceholderNames<A extends unknown[]> = { readonly [K in keyof A]-?: Placeholder extends A[K] ? string : 'this argument must be Shown<T>' }

/** Messages declared by code, as written (their literal types kept), checked. */
export function declareMessages<const D extends Record<string, AnyMessageDeclaration>> (declarations: D & Checked<D>): D {
  return declarations
}

/** Errors declared by code, as written (their literal types kept), checked. */
export function declareErrors<const D extends Record<string, AnyErrorDeclaration>> (declarations: D & Checked<D>): D {
  return declarations
}

/** The arguments a constructor takes: the message's, without placeholders. */
type Values<A extends unknown[]> = { [K in keyof A]: Exclude<A[K], Placeholder> }

type ConstructorOf<D, E> = D extends { readonly withCause: true }
  ? (...args: [...Values<ArgsOf<D>>, cause?: unknown]) => E
  : (...args: Values<ArgsOf<D>>) => E

/** One constructor per declaration, named by its `constructorName`. */
export type Constructors<Ds, E> = {
  readonly [C in keyof Ds as Ds[C] extends { readonly constructorName: infer N extends string } ? N : never]: ConstructorOf<Ds[C], E>
}

/** The constructors of `declarations`, each making its error with `make` (code, message, cause). */
export function constructorsOf<Ds extends Record<string, AnyErrorDeclaration>, E> (
  declarations: Ds, make: (code: keyof Ds & string, message: string, cause: unknown) => E,
): Constructors<Ds, E> {
  const made: Record<string, (...args: unknown[]) => E> = {}
  // Object.entries forgets the codes' type; each declaration is an AnyErrorDeclaration by Ds's bound.
  for (const [code, declaration] of Object.entries(declarations) as Array<[keyof Ds & string, AnyErrorDeclaration]>) {
    const { constructorName, message, placeholders, withCause } = declaration
    const arity = placeholders.length
    made[constructorName] = (...args) => make(code, message(...(args.slice(0, arity) as never[])), withCause === true ? args[arity] : undefined)
  }
  return made as Constructors<Ds, E>
}

/** The message as the docs show it: the message function called with the placeholders. */
export function templateOf (declaration: AnyMessageDeclaration): string {
  return declaration.message(...(declaration.placeholders.map((name) => new Placeholder(name)) as never[]))
}
