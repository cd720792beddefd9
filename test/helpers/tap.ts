import type t from 'tap'

/** The type of the `t` a subtest callback receives (tap's overloads make it long to spell). */
export type TapTest = Parameters<Parameters<typeof t.test>[0]>[0]
