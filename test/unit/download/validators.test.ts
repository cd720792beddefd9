import t from 'tap'
import {
  headerValue, ifRangeValidator, parseContentLength, parseContentRange, parseHttpDate, parseUnsatisfiedRange, sameValidator, showsValidator,
  strongEtag, strongLastModified,
} from '../../../agent/download/validators.js'

t.test('strongEtag keeps strong tags only (RFC 9110 §8.8.3)', async (t) => {
  const cases: Array<[string | undefined, string | undefined]> = [
    ['"abc"', '"abc"'],
    [' "abc" ', '"abc"'],
    ['""', '""'],
    ['W/"abc"', undefined],
    ['abc', undefined],
    ['"a"b"', undefined],
    ['"unterminated', undefined],
    [undefined, undefined],
  ]
  for (const [input, expected] of cases) t.equal(strongEtag(input), expected, String(input))
})

t.test('strongLastModified needs a Date at least 1 s later (RFC 9110 §8.8.2.2)', async (t) => {
  const lm = 'Wed, 21 Oct 2015 07:28:00 GMT'
  t.equal(strongLastModified(lm, 'Wed, 21 Oct 2015 07:28:01 GMT'), lm)
  t.equal(strongLastModified(lm, 'Thu, 01 Jan 2026 00:00:00 GMT'), lm)
  t.equal(strongLastModified(lm, lm), undefined, 'same second')
  t.equal(strongLastModified(lm, undefined), undefined, 'no Date')
  t.equal(strongLastModified('yesterday', 'Thu, 01 Jan 2026 00:00:00 GMT'), undefined)
  t.equal(strongLastModified(undefined, 'Thu, 01 Jan 2026 00:00:00 GMT'), undefined)
})

t.test('ifRangeValidator prefers the strong ETag, else Last-Modified', async (t) => {
  const lm = 'Wed, 21 Oct 2015 07:28:00 GMT'
  const date = 'Thu, 01 Jan 2026 00:00:00 GMT'
  t.equal(ifRangeValidator({ etag: '"e"', 'last-modified': lm, date }), '"e"')
  t.equal(ifRangeValidator({ etag: 'W/"e"', 'last-modified': lm, date }), lm)
  t.equal(ifRangeValidator({ etag: 'W/"e"' }), undefined)
  t.equal(ifRangeValidator({}), undefined)
  t.equal(ifRangeValidator({ etag: ['"a"', '"b"'] }), undefined, 'a repeated header is no validator')
})

t.test('parseContentRange (RFC 9110 §14.4)', async (t) => {
  const cases: Array<[string | undefined, ReturnType<typeof parseContentRange>]> = [
    ['bytes 0-999/1000', { start: 0, end: 999, totalBytes: 1000 }],
    ['bytes 500-999/1000', { start: 500, end: 999, totalBytes: 1000 }],
    ['BYTES 5-9/*', { start: 5, end: 9, totalBytes: undefined }],
    ['bytes 0-999/999', undefined],
    ['bytes 10-5/100', undefined],
    ['bytes */1000', undefined],
    ['bytes 0-9', undefined],
    ['items 0-9/10', undefined],
    ['bytes -1-9/10', undefined],
    ['bytes 0-99999999999999999999/100000000000000000000', undefined],
    [undefined, undefined],
  ]
  for (const [input, expected] of cases) t.same(parseContentRange(input), expected, String(input))
})

t.test('parseContentLength', async (t) => {
  t.equal(parseContentLength('1000'), 1000)
  t.equal(parseContentLength(' 0 '), 0)
  t.equal(parseContentLength('1e3'), undefined)
  t.equal(parseContentLength('-1'), undefined)
  t.equal(parseContentLength('99999999999999999999'), undefined)
  t.equal(parseContentLength(undefined), undefined)
})

t.test('headerValue ignores repeated headers', async (t) => {
  t.equal(headerValue({ a: 'x' }, 'a'), 'x')
  t.equal(headerValue({ a: ['x', 'y'] }, 'a'), undefined)
  t.equal(headerValue({}, 'a'), undefined)
})

t.test('parseHttpDate takes the three HTTP-date formats, nothing else (RFC 9110 §5.6.7)', async (t) => {
  const ms = Date.UTC(1994, 10, 6, 8, 49, 37)
  t.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), ms, 'IMF-fixdate')
  t.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT'), ms, 'rfc850')
  t.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), Date.parse('Sun Nov  6 08:49:37 1994'), 'asctime (local time, as Date.parse reads it)')
  for (const bad of ['-5', '7', '2015-10-21', 'soon', '']) t.equal(parseHttpDate(bad), undefined, JSON.stringify(bad))
})

const LAST_MODIFIED = 'Wed, 21 Oct 2015 07:28:00 GMT'
const LATER = 'Thu, 22 Oct 2015 07:28:00 GMT'

t.test('sameValidator: a differing validator of the same kind is another version; none, or another kind, is not proof of one', async (t) => {
  t.ok(sameValidator(undefined, { etag: '"v2"' }), 'nothing to compare with')
  t.ok(sameValidator('"v1"', { etag: '"v1"' }))
  t.notOk(sameValidator('"v1"', { etag: '"v2"' }))
  t.ok(sameValidator('"v1"', {}), 'no ETag: taken on the If-Range')
  t.ok(sameValidator('"v1"', { etag: 'W/"v2"' }), 'a weak ETag is no strong one')
  t.ok(sameValidator(LAST_MODIFIED, { 'last-modified': ` ${LAST_MODIFIED} ` }))
  t.notOk(sameValidator(LAST_MODIFIED, { 'last-modified': LATER }))
})

t.test('showsValidator: only the validator itself, strong, proves the same version', async (t) => {
  t.ok(showsValidator('"v1"', { etag: '"v1"' }))
  t.notOk(showsValidator('"v1"', {}), 'absent is no proof')
  t.notOk(showsValidator('"v1"', { etag: '"v2"' }))
  t.ok(showsValidator(LAST_MODIFIED, { 'last-modified': LAST_MODIFIED, date: LATER }))
  t.notOk(showsValidator(LAST_MODIFIED, { 'last-modified': LAST_MODIFIED }), 'no Date: not strong')
  t.notOk(showsValidator(LAST_MODIFIED, { 'last-modified': LAST_MODIFIED, date: LAST_MODIFIED }), 'modified the same second')
})

t.test('parseUnsatisfiedRange reads a 416\'s bytes */N', async (t) => {
  t.equal(parseUnsatisfiedRange('bytes */1000'), 1000)
  t.equal(parseUnsatisfiedRange(' bytes */0 '), 0)
  for (const bad of [undefined, 'bytes 0-1/2', 'bytes */', 'bytes */-1', 'bytes */99999999999999999999']) {
    t.equal(parseUnsatisfiedRange(bad), undefined, String(bad))
  }
})
