/**
 * OpenStack Ironic's root device hints: which disk an image goes to, told by what the disk is
 * (its serial, WWN, size, model…) rather than by a kernel name that may change between boots.
 *
 * A port of ironic-lib's `ironic_lib/utils.py` (`parse_root_device_hints`,
 * `_extract_hint_operator_and_values`, `_normalize_hint_expression`, `_append_operator_to_hints`,
 * `find_devices_by_hints`; now ironic-python-agent's `device_hints.py`) and of the operators of
 * oslo.utils' `specs_matcher`, as they behave:
 *
 * - A hint's expression is trimmed and lower-cased; its operator is the first token the
 *   specs_matcher grammar finds (`s== foo`, `>=100`, `<or> a <or> b`); its values are the text
 *   split on that operator (each trimmed, empty ones dropped). No operator: `s==` for strings,
 *   `==` for size.
 * - String values are URL-quoted (Python's `urllib.parse.quote`: every byte but letters, digits,
 *   `_.-~/` as %XX), on both sides: `foo bar` is `foo%20bar`. The disk's value goes through the
 *   same normalisation, so the match ignores case and surrounding spaces.
 * - size is in GiB: the disk's bytes / 2^30, a float (`== 100` takes exactly 100 GiB; use `>=`).
 * - rotational is a Boolean (oslo's bool_from_string, strict: true/false, 1/0, on/off, yes/no,
 *   y/n, t/f, in any case).
 * - A disk with several serials or WWNs (read from udev and from sysfs) matches when one of them
 *   does (ironic-python-agent's lists).
 * - Every hint must match.
 *
 * Where this refuses what Ironic would accept, it is input Ironic takes but cannot match as
 * written (each refused with an Error naming the hint): an operator of the other kind (a numeric
 * `>=` on a string hint makes Ironic compare float(serial); `s==` or `<or>` on size compares a
 * float to a string, never equal), `<all-in>` and `<range-in>` (Ironic fails or never matches),
 * several values after a one-value operator (Ironic uses the first only: `<in> a <in> b` is
 * `<in> a`), an empty value between two `<or>`s. Two additions: `name` may be given without
 * `/dev/` (`sda` is `/dev/sda`, except after `<in>`), and a disk that has no value for a string
 * hint does not match it (Ironic compares the text `none`).
 */

/** Every hint Ironic knows but `tran`, with its type (ironic-lib's VALID_ROOT_DEVICE_HINTS). */
export const HINT_TYPES = {
  size: 'int',
  model: 'str',
  wwn: 'str',
  serial: 'str',
  vendor: 'str',
  wwn_with_extension: 'str',
  wwn_vendor_extension: 'str',
  name: 'str',
  rotational: 'bool',
  hctl: 'str',
  by_path: 'str',
} as const

export type HintName = keyof typeof HINT_TYPES
type StringHintName = { [K in HintName]: typeof HINT_TYPES[K] extends 'str' ? K : never }[HintName]

export type NumberOperator = '==' | '!=' | '>=' | '<=' | '>' | '<' | '='
export type StringOperator = 's==' | 's!=' | 's>=' | 's<=' | 's>' | 's<' | '<in>' | '<or>'

/** One parsed hint. `given` is the hint as written, for messages. */
export type RootDeviceHint =
  | { name: 'size'; op: NumberOperator; value: number; given: string }
  | { name: StringHintName; op: StringOperator; values: string[]; given: string }
  | { name: 'rotational'; value: boolean; given: string }

/** The disk as the hints see it (ironic-python-agent's serialized BlockDevice). */
export interface HintTarget {
  /** /dev/sda */
  name: string
  sizeBytes: number
  model: string | null
  vendor: string | null
  serial: readonly string[]
  wwn: readonly string[]
  wwnWithExtension: string | null
  wwnVendorExtension: string | null
  rotational: boolean | null
  hctl: string | null
  byPath: readonly string[]
}

const STRING_VALUE: Record<StringHintName, (target: HintTarget) => readonly string[] | string | null> = {
  model: (t) => t.model,
  vendor: (t) => t.vendor,
  serial: (t) => t.serial,
  wwn: (t) => t.wwn,
  wwn_with_extension: (t) => t.wwnWithExtension,
  wwn_vendor_extension: (t) => t.wwnVendorExtension,
  name: (t) => t.name,
  hctl: (t) => t.hctl,
  by_path: (t) => t.byPath,
}

// ---- specs_matcher's grammar (oslo_utils/specs_matcher.py make_grammar) ----

/** The unary operators, in the grammar's MatchFirst order (`==` before `=`, `<in>` before `<`, `s<=` before `s<`). */
const UNARY_OPS = ['==', '=', '!=', '<in>', '>=', '<=', '>', '<', 's==', 's!=', 's<=', 's<', 's>=', 's>'] as const
type GrammarOp = typeof UNARY_OPS[number] | '<or>' | '<all-in>' | '<range-in>'
/** An atom (a value token) never starts with an operator. */
const KEYWORDS: readonly string[] = [...UNARY_OPS, '<all-in>', '<or>', '<range-in>']
/** pyparsing's default whitespace. */
const WHITE = /^[ \t\n\r]*/

function skipWhite (text: string, at: number): number {
  return at + (WHITE.exec(text.slice(at))?.[0].length ?? 0)
}

/** The atom at `at` (after whitespace): its end, or undefined when there is none. */
function atomEnd (text: string, at: number): number | undefined {
  const start = skipWhite(text, at)
  const rest = text.slice(start)
  if (rest === '' || /^\s/.test(rest) || KEYWORDS.some((k) => rest.startsWith(k))) return undefined
  return start + (/^\S+/.exec(rest)?.[0].length ?? 0)
}

/** The literal `op` at `at` (after whitespace): its end, or undefined. */
function literalEnd (text: string, at: number, op: string): number | undefined {
  const start = skipWhite(text, at)
  return text.startsWith(op, start) ? start + op.length : undefined
}

/**
 * The operator `parseString` finds first: `''` for a plain atom (no operator), undefined when the
 * grammar takes nothing (pyparsing's ParseException). `expr = disjunction | nary | range_op | unary | atom`.
 */
function grammarOperator (text: string): GrammarOp | '' | undefined {
  const afterOr = literalEnd(text, 0, '<or>')
  if (afterOr !== undefined && atomEnd(text, afterOr) !== undefined) return '<or>'
  const afterAllIn = literalEnd(text, 0, '<all-in>')
  if (afterAllIn !== undefined && atomEnd(text, afterAllIn) !== undefined) return '<all-in>'
  const afterRange = literalEnd(text, 0, '<range-in>')
  if (afterRange !== undefined) {
    let at: number | undefined = afterRange
    for (let i = 0; i < 4 && at !== undefined; i++) at = atomEnd(text, at)
    if (at !== undefined) return '<range-in>'
  }
  // MatchFirst over the unary operators: the first literal that matches is the one tried.
  const op = UNARY_OPS.find((candidate) => literalEnd(text, 0, candidate) !== undefined)
  if (op !== undefined) {
    const after = literalEnd(text, 0, op) ?? 0
    if (atomEnd(text, after) !== undefined) return op
  }
  return atomEnd(text, 0) !== undefined ? '' : undefined
}

/**
 * `_extract_hint_operator_and_values`: the operator ('' for none) and the values, from the
 * expression trimmed and lower-cased. Throws for an empty expression or one the grammar cannot read.
 */
export function extractOperatorAndValues (expression: string, hintName: string): { op: GrammarOp | ''; values: string[] } {
  const text = expression.trim().toLowerCase()
  if (text === '') throw new Error(`root device hint ${hintName}: its expression is empty`)
  const op = grammarOperator(text)
  if (op === undefined) throw new Error(`root device hint ${hintName}: cannot read ${JSON.stringify(expression)} (an operator with no value after it?)`)
  if (op === '') return { op, values: [text] }
  // Python's re.split(op, text): no operator holds a regular expression's special character.
  return { op, values: text.split(op).filter((v) => v !== '').map((v) => v.trim()) }
}

/** Python's `urllib.parse.quote(text)` (safe '/'): each UTF-8 byte but A-Z a-z 0-9 _ . - ~ / as %XX. */
export function pythonQuote (text: string): string {
  let quoted = ''
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte)
    quoted += /[A-Za-z0-9_.\-~/]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return quoted
}

/** `_normalize_hint_expression`: `[op] value [op value]*`, the values quoted: `<or> foo bar <or> x` → `<or> foo%20bar <or> x`. */
export function normalizeHintExpression (expression: string, hintName: string): string {
  const { op, values } = extractOperatorAndValues(expression, hintName)
  return (op + values.map((v) => ` ${pythonQuote(v)} `).join(op)).trim()
}

// ---- Parsing ----

const NUMBER_OPS: readonly string[] = ['==', '!=', '>=', '<=', '>', '<', '=']
const STRING_OPS: readonly string[] = ['s==', 's!=', 's>=', 's<=', 's>', 's<', '<in>', '<or>']
const TRUE_STRINGS = ['1', 't', 'true', 'on', 'y', 'yes']
const FALSE_STRINGS = ['0', 'f', 'false', 'off', 'n', 'no']

function isHintName (name: string): name is HintName {
  return Object.hasOwn(HINT_TYPES, name)
}

/** Python's str() of a JSON value, as Ironic applies it to an int or bool hint. */
function pythonStr (value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (typeof value === 'boolean') return value ? 'True' : 'False'
  // As Python's str() (1e+21 alike); JSON's 100.0 is read as 100 here, where Python keeps a float and refuses it.
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  return undefined
}

/** Python's int() of a trimmed decimal text (an optional sign, digits, single underscores between them). */
function pythonInt (text: string): number | undefined {
  const trimmed = text.trim()
  if (!/^[+-]?\d+(?:_\d+)*$/.test(trimmed)) return undefined
  const value = Number(trimmed.replaceAll('_', ''))
  return Number.isSafeInteger(value) ? value : undefined
}

function shown (value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(JSON.stringify(value) ?? value)
}

/** One hint: its value as Ironic's JSON holds it (a string, a number for size, a Boolean for rotational). */
function parseHint (name: string, expression: unknown, given: string): RootDeviceHint {
  if (!isHintName(name)) {
    throw new Error(`unknown root device hint ${JSON.stringify(name)} (the hints are ${Object.keys(HINT_TYPES).join(', ')})`)
  }
  if (name === 'rotational') {
    const text = pythonStr(expression)?.trim().toLowerCase()
    if (text !== undefined && TRUE_STRINGS.includes(text)) return { name, value: true, given }
    if (text !== undefined && FALSE_STRINGS.includes(text)) return { name, value: false, given }
    throw new Error(`root device hint rotational is not a Boolean value: ${shown(expression)} (true or false)`)
  }
  if (name === 'size') {
    const text = pythonStr(expression)
    if (text === undefined) throw new Error(`root device hint size is not an integer value: ${shown(expression)}`)
    const { op, values } = extractOperatorAndValues(text, name)
    const numbers = values.map((v) => pythonInt(v))
    if (numbers.some((n) => n === undefined)) {
      throw new Error(`root device hint size is not an integer value: ${shown(expression)} (GiB, e.g. >= 100)`)
    }
    if (numbers.some((n) => n !== undefined && n <= 0)) throw new Error(`root device hint size should be a positive integer: ${shown(expression)}`)
    const operator = op === '' ? '==' : op
    if (!NUMBER_OPS.includes(operator)) {
      throw new Error(`root device hint size: ${operator} is not an operator for a number (==, !=, >=, <=, >, <; Ironic never matches a size with it)`)
    }
    const [value, ...more] = numbers
    if (value === undefined || more.length > 0) {
      throw new Error(`root device hint size: ${operator} takes one value, got ${values.length}: ${shown(expression)}`)
    }
    return { name, op: operator as NumberOperator, value, given }
  }
  if (typeof expression !== 'string') throw new Error(`root device hint ${name} is not a string value: ${shown(expression)}`)
  const { op, values } = extractOperatorAndValues(expression, name)
  const operator = op === '' ? 's==' : op
  if (!STRING_OPS.includes(operator)) {
    const hint = NUMBER_OPS.includes(operator) ? `: for a string write s${operator === '=' ? '==' : operator}` : ''
    throw new Error(`root device hint ${name}: ${operator} is not an operator for a string (s==, s!=, s>=, s<=, s>, s<, <in>, <or>)${hint}`)
  }
  if (values.some((v) => v === '')) throw new Error(`root device hint ${name}: an empty value in ${shown(expression)}`)
  if (operator !== '<or>' && values.length !== 1) {
    throw new Error(`root device hint ${name}: ${operator} takes one value, got ${values.length}: ${shown(expression)} (Ironic would use only the first)`)
  }
  // Ours: `name` without /dev/ is the /dev/ name (a substring after <in> is left as it is).
  const named = name === 'name' && operator !== '<in>' ? values.map((v) => v.startsWith('/dev/') ? v : `/dev/${v}`) : values
  return { name, op: operator as StringOperator, values: named.map(pythonQuote), given }
}

/**
 * Ironic's form: the JSON object of a node's `properties.root_device`, e.g.
 * `{ "serial": "ABC", "size": ">= 100", "rotational": false, "model": "<or> A <or> B" }`.
 * Throws an Error naming the hint that is wrong; an empty object is an error too (no hint).
 */
export function parseRootDeviceHints (rootDevice: unknown): RootDeviceHint[] {
  if (typeof rootDevice !== 'object' || rootDevice === null || Array.isArray(rootDevice)) {
    throw new Error('root device hints: expected a JSON object of hints, e.g. {"serial": "ABC", "size": ">= 100"}')
  }
  const entries = Object.entries(rootDevice)
  if (entries.length === 0) throw new Error('root device hints: no hint given')
  return entries.map(([name, expression]) => parseHint(name, expression, `${name}=${pythonStr(expression) ?? shown(expression)}`))
}

/** In the CLI form, an operator written right after the hint's name (`size>=100`); for a string hint it is the `s` operator. */
const SHORTHAND_OPS = ['>=', '<=', '!=', '==', '>', '<'] as const

/**
 * The CLI form: `serial=ABC,size>=100,model=<or> A <or> B`, hints separated by commas, each
 * `NAME=EXPRESSION` (the expression as in Ironic's JSON, an operator in it or not) or
 * `NAME OP VALUE` with OP one of >= <= != == > < right after the name (`size>=100`; for a string
 * hint `serial!=X` is `s!=`). A comma or a backslash inside a value is written `\,` or `\\`.
 * Text that starts with `{` is Ironic's JSON object.
 */
export function parseHintsText (text: string): RootDeviceHint[] {
  if (text.trimStart().startsWith('{')) {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (err) {
      throw new Error(`root device hints: not a JSON object: ${(err as Error).message}`, { cause: err })
    }
    return parseRootDeviceHints(json)
  }
  const items = splitUnescaped(text)
  const hints: RootDeviceHint[] = []
  for (const item of items) {
    const trimmed = item.trim()
    if (trimmed === '') {
      throw new Error(`root device hints: an empty hint in ${JSON.stringify(text)} (hints are separated by commas; write a comma in a value as \\,)`)
    }
    const [, name = '', rest = ''] = /^([A-Za-z_]*)\s*([\s\S]*)$/.exec(trimmed) ?? []
    if (name === '') throw new Error(`root device hints: ${JSON.stringify(trimmed)} does not start with a hint's name (e.g. serial=ABC)`)
    if (hints.some((h) => h.name === name)) throw new Error(`root device hint ${name} is given twice`)
    const shorthand = SHORTHAND_OPS.find((op) => rest.startsWith(op))
    let expression: string
    if (shorthand !== undefined) {
      const type = isHintName(name) ? HINT_TYPES[name] : undefined
      expression = `${type === 'str' ? 's' : ''}${shorthand} ${rest.slice(shorthand.length)}`
      if (type === 'bool') throw new Error(`root device hint rotational takes no operator: write rotational=true or rotational=false`)
    } else if (rest.startsWith('=')) {
      expression = rest.slice(1)
    } else {
      throw new Error(`root device hints: expected = or an operator after ${JSON.stringify(name)}, got ${JSON.stringify(trimmed)}`)
    }
    hints.push(parseHint(name, expression, trimmed))
  }
  return hints
}

/** Splits on commas not preceded by a backslash; `\,` is a comma and `\\` a backslash in a value. */
function splitUnescaped (text: string): string[] {
  const items: string[] = []
  let current = ''
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    if (char === '\\' && (text[i + 1] === ',' || text[i + 1] === '\\')) {
      current += text[i + 1]
      i++
    } else if (char === ',') {
      items.push(current)
      current = ''
    } else {
      current += char
    }
  }
  items.push(current)
  return items
}

/** The hints as written, for messages: `serial=ABC, size>=100`. */
export function formatHints (hints: readonly RootDeviceHint[]): string {
  return hints.map((h) => h.given).join(', ')
}

// ---- Matching ----

const GiB = 1024 ** 3

/** Whether the hint matches, or why not (`serial is "xyz"`). */
export function matchHint (target: HintTarget, hint: RootDeviceHint): { matches: true } | { matches: false; why: string } {
  if (hint.name === 'rotational') {
    if (target.rotational === null) return { matches: false, why: 'its rotational is not known' }
    return target.rotational === hint.value ? { matches: true } : { matches: false, why: `rotational is ${String(target.rotational)}` }
  }
  if (hint.name === 'size') {
    const gib = target.sizeBytes / GiB
    return numberMatches(hint.op, gib, hint.value) ? { matches: true } : { matches: false, why: `size is ${formatGiB(target.sizeBytes)}` }
  }
  const raw = STRING_VALUE[hint.name](target)
  const values = (typeof raw === 'string' ? [raw] : raw ?? []).filter((v) => v.trim() !== '')
  if (values.length === 0) return { matches: false, why: `it has no ${hint.name}` }
  for (const value of values) {
    let normalized: string
    try {
      normalized = normalizeHintExpression(value, hint.name)
    } catch {
      continue
    }
    if (stringMatches(hint.op, normalized, hint.values)) return { matches: true }
  }
  return { matches: false, why: `${hint.name} is ${values.map((v) => JSON.stringify(v)).join(' or ')}` }
}

/** specs_matcher's numeric operators: float(x) OP float(y); `=` is `>=` (kept for legacy reasons there). */
function numberMatches (op: NumberOperator, x: number, y: number): boolean {
  switch (op) {
    case '==': return x === y
    case '!=': return x !== y
    case '>=': case '=': return x >= y
    case '<=': return x <= y
    case '>': return x > y
    case '<': return x < y
  }
}

/** specs_matcher's string operators over normalized (quoted, ASCII) text: code-unit order is Python's. */
function stringMatches (op: StringOperator, x: string, values: readonly string[]): boolean {
  const y = values[0] ?? ''
  switch (op) {
    case 's==': return x === y
    case 's!=': return x !== y
    case 's>=': return x >= y
    case 's<=': return x <= y
    case 's>': return x > y
    case 's<': return x < y
    case '<in>': return x.includes(y)
    case '<or>': return values.includes(x)
  }
}

/** The first reason a target fails the hints, or undefined when it matches them all (`find_devices_by_hints`'s test). */
export function mismatchOf (target: HintTarget, hints: readonly RootDeviceHint[]): string | undefined {
  for (const hint of hints) {
    const result = matchHint(target, hint)
    if (!result.matches) return result.why
  }
  return undefined
}

/** `find_devices_by_hints`: every target that matches all the hints, in the order given. */
export function findDevicesByHints<T extends HintTarget> (targets: readonly T[], hints: readonly RootDeviceHint[]): T[] {
  return targets.filter((target) => mismatchOf(target, hints) === undefined)
}

/** A size as the size hint reads it: `447.13 GiB`. */
export function formatGiB (sizeBytes: number): string {
  return `${Number((sizeBytes / GiB).toFixed(2))} GiB`
}
