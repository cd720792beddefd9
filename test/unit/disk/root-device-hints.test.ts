/**
 * Root device hints against the cases of ironic-lib's own tests (ironic_lib/tests/test_utils.py,
 * ParseRootDeviceTestCase and MatchRootDeviceTestCase, the last version before the code moved to
 * ironic-python-agent's device_hints.py), each test named after the one it ports; then the cases
 * where this port refuses what Ironic takes but cannot match, and the CLI form.
 */
import t from 'tap'
import {
  extractOperatorAndValues,
  findDevicesByHints,
  formatGiB,
  formatHints,
  matchHint,
  normalizeHintExpression,
  parseHintsText,
  parseRootDeviceHints,
  pythonQuote,
  type HintTarget,
  type RootDeviceHint,
} from '../../../agent/disk/root-device-hints.js'

/** A hint in Ironic's parsed string form (`s== foo%20model`, `== 12345`, `<or> a <or> b`), to compare with its tests' expectations. */
function ironicForm (hint: RootDeviceHint): string | boolean {
  if (hint.name === 'rotational') return hint.value
  if (hint.name === 'size') return `${hint.op} ${hint.value}`
  return (hint.op + hint.values.map((v) => ` ${v} `).join(hint.op)).trim()
}

function parsed (rootDevice: Record<string, unknown>): Record<string, string | boolean> {
  return Object.fromEntries(parseRootDeviceHints(rootDevice).map((hint) => [hint.name, ironicForm(hint)]))
}

t.test('test_parse_root_device_hints_without_operators', async (t) => {
  const rootDevice = {
    wwn: '123456',
    model: 'FOO model',
    size: 12345,
    serial: 'foo-serial',
    vendor: 'foo VENDOR with space',
    name: '/dev/sda',
    wwn_with_extension: '123456111',
    wwn_vendor_extension: '111',
    rotational: true,
    hctl: '1:0:0:0',
    by_path: '/dev/disk/by-path/1:0:0:0',
  }
  t.same(parsed(rootDevice), {
    wwn: 's== 123456',
    model: 's== foo%20model',
    size: '== 12345',
    serial: 's== foo-serial',
    vendor: 's== foo%20vendor%20with%20space',
    name: 's== /dev/sda',
    wwn_with_extension: 's== 123456111',
    wwn_vendor_extension: 's== 111',
    rotational: true,
    hctl: 's== 1%3A0%3A0%3A0',
    by_path: 's== /dev/disk/by-path/1%3A0%3A0%3A0',
  })
})

t.test('test_parse_root_device_hints_with_operators', async (t) => {
  const rootDevice = {
    wwn: 's== 123456',
    model: 's== foo MODEL',
    size: '>= 12345',
    serial: 's!= foo-serial',
    vendor: 's== foo VENDOR with space',
    name: '<or> /dev/sda <or> /dev/sdb',
    wwn_with_extension: 's!= 123456111',
    wwn_vendor_extension: 's== 111',
    rotational: true,
    hctl: 's== 1:0:0:0',
    by_path: 's== /dev/disk/by-path/1:0:0:0',
  }
  t.same(parsed(rootDevice), {
    ...rootDevice,
    model: 's== foo%20model',
    vendor: 's== foo%20vendor%20with%20space',
    hctl: 's== 1%3A0%3A0%3A0',
    by_path: 's== /dev/disk/by-path/1%3A0%3A0%3A0',
  })
})

t.test('test_parse_root_device_hints_string_compare_operator_name', async (t) => {
  t.same(parsed({ name: 's== /dev/sdb' }), { name: 's== /dev/sdb' })
})

t.test('test_parse_root_device_hints_no_hints: no hint is an error here (Ironic returns None: then no hint applies)', async (t) => {
  t.throws(() => parseRootDeviceHints({}), /no hint given/)
})

t.test('test_parse_root_device_hints_convert_size', async (t) => {
  for (const size of [12345, '12345']) t.same(parsed({ size }), { size: '== 12345' })
})

t.test('test_parse_root_device_hints_invalid_size', async (t) => {
  for (const size of ['not-int', -123, 0]) t.throws(() => parseRootDeviceHints({ size }), /root device hint size/, String(size))
  t.throws(() => parseRootDeviceHints({ size: 'not-int' }), /size is not an integer value: "not-int"/)
  t.throws(() => parseRootDeviceHints({ size: -123 }), /size should be a positive integer: -123/)
  t.throws(() => parseRootDeviceHints({ size: 12.5 }), /size is not an integer value: 12.5/)
  t.throws(() => parseRootDeviceHints({ size: true }), /size is not an integer value/)
})

t.test('test_parse_root_device_hints_int_or: Ironic takes it, but its <or> compares a float to a string and never matches: refused', async (t) => {
  t.throws(() => parseRootDeviceHints({ size: '<or> 123 <or> 456 <or> 789' }), /size: <or> is not an operator for a number/)
})

t.test('test_parse_root_device_hints_int_or_invalid', async (t) => {
  t.throws(() => parseRootDeviceHints({ size: '<or> 123 <or> non-int <or> 789' }), /size is not an integer value/)
})

t.test('test_parse_root_device_hints_string_or_space', async (t) => {
  t.same(parsed({ model: '<or> foo <or> foo bar <or> bar' }), { model: '<or> foo <or> foo%20bar <or> bar' })
})

t.test('test_parse_root_device_hints_convert_rotational', async (t) => {
  for (const value of [true, 'true', 'on', 'y', 'yes']) t.same(parsed({ rotational: value }), { rotational: true }, String(value))
  for (const value of [false, 'false', 'off', 'n', 'no']) t.same(parsed({ rotational: value }), { rotational: false }, String(value))
  // oslo's bool_from_string also takes 1/0, t/f, in any case and with spaces.
  for (const value of [1, '1', 'T', ' Yes ']) t.same(parsed({ rotational: value }), { rotational: true }, String(value))
  for (const value of [0, '0', 'F', 'OFF']) t.same(parsed({ rotational: value }), { rotational: false }, String(value))
})

t.test('test_parse_root_device_hints_invalid_rotational', async (t) => {
  t.throws(() => parseRootDeviceHints({ rotational: 'not-bool' }), /rotational is not a Boolean value: "not-bool"/)
  t.throws(() => parseRootDeviceHints({ rotational: 2 }), /rotational is not a Boolean value/)
})

t.test('test_parse_root_device_hints_invalid_{wwn,wwn_with_extension,wwn_vendor_extension,model,serial,vendor,name,hctl,by_path}', async (t) => {
  for (const name of ['wwn', 'wwn_with_extension', 'wwn_vendor_extension', 'model', 'serial', 'vendor', 'name', 'hctl', 'by_path']) {
    t.throws(() => parseRootDeviceHints({ [name]: 123 }), new RegExp(`root device hint ${name} is not a string value: 123`), name)
  }
})

t.test('test_parse_root_device_hints_non_existent_hint', async (t) => {
  t.throws(() => parseRootDeviceHints({ 'non-existent': 'foo' }), /unknown root device hint "non-existent" \(the hints are size, model/)
  t.throws(() => parseRootDeviceHints({ tran: 'sas' }), /unknown root device hint "tran"/, 'ironic-python-agent\'s newer tran is not read here')
})

t.test('test_extract_hint_operator_and_values_*', async (t) => {
  t.same(extractOperatorAndValues('>= 123', 'size'), { op: '>=', values: ['123'] }, 'single_value')
  t.same(extractOperatorAndValues('<or> 123 <or> 456 <or> 789', 'size'), { op: '<or>', values: ['123', '456', '789'] }, 'multiple_values')
  t.same(extractOperatorAndValues('<or> foo <or> foo bar <or> bar', 'model'), { op: '<or>', values: ['foo', 'foo bar', 'bar'] }, 'multiple_values_space')
  t.same(extractOperatorAndValues('123', 'size'), { op: '', values: ['123'] }, 'no_operator')
  t.throws(() => extractOperatorAndValues('', 'size'), /root device hint size: its expression is empty/, 'empty_value')
  t.throws(() => extractOperatorAndValues('   ', 'size'), /its expression is empty/)
})

t.test('test__append_operator_to_hints', async (t) => {
  t.same(parsed({ serial: 'foo', size: 12345, model: 'foo model', rotational: true }), {
    serial: 's== foo', size: '== 12345', model: 's== foo%20model', rotational: true,
  })
})

t.test('test_normalize_hint_expression_*', async (t) => {
  t.equal(normalizeHintExpression('<or> foo <or> foo bar <or> bar', 'model'), '<or> foo <or> foo%20bar <or> bar', 'or')
  t.equal(normalizeHintExpression('<in> foo <in> foo bar <in> bar', 'model'), '<in> foo <in> foo%20bar <in> bar', 'in')
  t.equal(normalizeHintExpression('s== test string with space', 'model'), 's== test%20string%20with%20space', 'op_space')
  t.equal(normalizeHintExpression('s!= SpongeBob', 'model'), 's!= spongebob', 'op_no_space')
  t.equal(normalizeHintExpression('no operators', 'model'), 'no%20operators', 'no_op_space')
  t.equal(normalizeHintExpression('NoSpace', 'model'), 'nospace', 'no_op_no_space')
  t.throws(() => normalizeHintExpression('', 'size'), /empty/, 'empty_value')
})

t.test('the grammar as pyparsing reads it: operators glued to their value, an operator alone', async (t) => {
  t.same(extractOperatorAndValues('>=100', 'size'), { op: '>=', values: ['100'] })
  t.same(extractOperatorAndValues('s==Big Model', 'model'), { op: 's==', values: ['big model'] })
  t.same(extractOperatorAndValues('<in>small', 'model'), { op: '<in>', values: ['small'] })
  t.same(extractOperatorAndValues('= 5', 'size'), { op: '=', values: ['5'] })
  t.same(extractOperatorAndValues('foo <or> bar', 'model'), { op: '', values: ['foo <or> bar'] }, 'an operator after a value is part of it')
  t.throws(() => extractOperatorAndValues('s==', 'model'), /cannot read "s=="/)
  t.throws(() => extractOperatorAndValues('>= <= 5', 'size'), /cannot read/)
})

t.test('Python\'s urllib.parse.quote: safe / and _.-~, UTF-8 bytes', async (t) => {
  t.equal(pythonQuote('a b:c/d_e.f-g~h'), 'a%20b%3Ac/d_e.f-g~h')
  t.equal(pythonQuote('é<>=!,'), '%C3%A9%3C%3E%3D%21%2C')
})

/** MatchRootDeviceTestCase's devices (sizes in bytes: 60, 120 and 10 GiB). */
const target = (fields: Partial<HintTarget> & { name: string; sizeBytes: number }): HintTarget => ({
  model: null, vendor: null, serial: [], wwn: [], wwnWithExtension: null, wwnVendorExtension: null, rotational: null, hctl: null, byPath: [], ...fields,
})
const devices = [
  target({ name: '/dev/sda', sizeBytes: 64424509440, model: 'ok model', serial: ['fakeserial'] }),
  target({ name: '/dev/sdb', sizeBytes: 128849018880, model: 'big model', serial: ['veryfakeserial'], rotational: true }),
  target({ name: '/dev/sdc', sizeBytes: 10737418240, model: 'small model', serial: ['veryveryfakeserial'], rotational: false }),
]
const found = (hints: Record<string, unknown>): string[] => findDevicesByHints(devices, parseRootDeviceHints(hints)).map((d) => d.name)

t.test('MatchRootDeviceTestCase', async (t) => {
  t.same(found({ size: '>= 70' }), ['/dev/sdb'], 'test_match_root_device_hints_one_hint')
  t.same(found({ rotational: false }), ['/dev/sdc'], 'test_match_root_device_hints_rotational')
  t.same(found({ size: '>=100', rotational: true }), ['/dev/sdb'], 'test_match_root_device_hints_rotational_convert_devices_bool')
  t.same(found({ size: '>= 50', model: 's==big model', serial: 's==veryfakeserial' }), ['/dev/sdb'], 'test_match_root_device_hints_multiple_hints')
  t.same(found({ size: '<= 20', model: '<or> model 5 <or> foomodel <or> small model <or>', serial: 's== veryveryfakeserial' }), ['/dev/sdc'],
    'test_match_root_device_hints_multiple_hints2 (a trailing <or> is dropped)')
  t.same(found({ rotational: false, model: '<in> small' }), ['/dev/sdc'], 'test_match_root_device_hints_multiple_hints3')
  t.same(found({ size: '120', model: 'big model', serial: 'veryfakeserial' }), ['/dev/sdb'], 'test_match_root_device_hints_no_operators')
  t.same(found({ size: '>=50', model: 's==foo' }), [], 'test_match_root_device_hints_no_device_found')
  t.same(found({ size: '>= 10' }), ['/dev/sda', '/dev/sdb', '/dev/sdc'], 'test_find_devices_all')
  t.same(found({ size: '>= 100500' }), [], 'test_find_devices_none')
  t.same(found({ name: 's== /dev/sda' }), ['/dev/sda'], 'test_find_devices_name')
})

t.test('test_match_root_device_hints_empty_device_attribute: a blank value never matches', async (t) => {
  const blank = [target({ name: '/dev/sda', sizeBytes: 1, model: ' ' })]
  t.same(findDevicesByHints(blank, parseRootDeviceHints({ model: 'foo' })), [])
  t.same(matchHint(blank[0] as HintTarget, parseRootDeviceHints({ model: 'foo' })[0] as RootDeviceHint), { matches: false, why: 'it has no model' })
})

t.test('matching: case and spaces, lists of serials and WWNs, size in GiB, operators', async (t) => {
  const disk = target({
    name: '/dev/nvme0n1',
    sizeBytes: 480103981056, // 447.13 GiB
    model: 'SAMSUNG MZQL2480HCJR-00A07  ',
    serial: ['S64HNE0R123456', 'SAMSUNG_MZQL2480HCJR-00A07_S64HNE0R123456'],
    wwn: ['eui.36344830526004440025384500000001'],
    rotational: false,
    byPath: ['/dev/disk/by-path/pci-0000:01:00.0-nvme-1'],
  })
  const matches = (hints: Record<string, unknown>): boolean => findDevicesByHints([disk], parseRootDeviceHints(hints)).length === 1
  t.ok(matches({ serial: 's64hne0r123456' }), 'serial in any case')
  t.ok(matches({ serial: 'samsung_mzql2480hcjr-00a07_s64hne0r123456' }), 'any serial of the list')
  t.ok(matches({ model: 'Samsung MZQL2480HCJR-00A07' }), 'the model trimmed, any case')
  t.ok(matches({ model: '<in> mzql2480' }))
  t.ok(matches({ wwn: 'EUI.36344830526004440025384500000001' }))
  t.ok(matches({ by_path: '/dev/disk/by-path/pci-0000:01:00.0-nvme-1' }), 'quoted both sides')
  t.ok(matches({ name: 'nvme0n1' }), 'name without /dev/')
  t.ok(matches({ name: '<in> nvme0' }))
  t.ok(matches({ name: '<or> sda <or> nvme0n1' }))
  t.ok(matches({ size: '>= 400' }))
  t.ok(matches({ size: '= 400' }), 'the legacy = is >=')
  t.ok(matches({ size: '< 448' }))
  t.notOk(matches({ size: 447 }), 'size == takes exactly that many GiB')
  t.ok(matches({ size: '!= 447' }))
  t.ok(matches({ serial: 's!= other' }))
  t.ok(matches({ serial: 's> a' }))
  t.notOk(matches({ hctl: '0:0:0:0' }), 'no SCSI address')
  t.same(matchHint(disk, parseRootDeviceHints({ hctl: '0:0:0:0' })[0] as RootDeviceHint), { matches: false, why: 'it has no hctl' })
  t.same(matchHint(disk, parseRootDeviceHints({ size: 447 })[0] as RootDeviceHint), { matches: false, why: 'size is 447.13 GiB' })
  t.same(matchHint(disk, parseRootDeviceHints({ rotational: true })[0] as RootDeviceHint), { matches: false, why: 'rotational is false' })
  t.same(matchHint(disk, parseRootDeviceHints({ serial: 'x' })[0] as RootDeviceHint), {
    matches: false, why: 'serial is "S64HNE0R123456" or "SAMSUNG_MZQL2480HCJR-00A07_S64HNE0R123456"',
  })
  t.same(matchHint(target({ name: '/dev/sda', sizeBytes: 1 }), parseRootDeviceHints({ rotational: false })[0] as RootDeviceHint),
    { matches: false, why: 'its rotational is not known' })
  t.equal(formatGiB(480103981056), '447.13 GiB')
})

t.test('refused where Ironic would take the hint but cannot match it as written', async (t) => {
  t.throws(() => parseRootDeviceHints({ serial: '>= 100' }), /serial: >= is not an operator for a string .*: for a string write s>=/)
  t.throws(() => parseRootDeviceHints({ model: '= foo' }), /write s==/)
  t.throws(() => parseRootDeviceHints({ size: 's== 100' }), /size: s== is not an operator for a number/)
  t.throws(() => parseRootDeviceHints({ size: '<in> 100' }), /size: <in> is not an operator for a number/)
  t.throws(() => parseRootDeviceHints({ model: '<all-in> a b' }), /<all-in> is not an operator for a string/)
  t.throws(() => parseRootDeviceHints({ model: '<range-in> [ 1 2 ]' }), /<range-in> is not an operator for a string/)
  t.throws(() => parseRootDeviceHints({ model: '<in> a <in> b' }), /model: <in> takes one value, got 2.*only the first/)
  t.throws(() => parseRootDeviceHints({ size: '>= 1 >= 2' }), /size: >= takes one value, got 2/)
  t.throws(() => parseRootDeviceHints({ model: '<or> a <or>  <or> b' }), /model: an empty value/)
  t.throws(() => parseRootDeviceHints([]), /expected a JSON object/)
})

t.test('the CLI form: NAME=EXPR or NAME OP VALUE, commas between hints, \\, in a value, or Ironic\'s JSON', async (t) => {
  const forms = (text: string): Array<[string, string | boolean]> => parseHintsText(text).map((h) => [h.name, ironicForm(h)])
  t.same(forms('serial=ABC,size>=100,model=<or> A <or> B'), [['serial', 's== abc'], ['size', '>= 100'], ['model', '<or> a <or> b']])
  t.same(forms(' serial = ABC , size = >= 100 '), [['serial', 's== abc'], ['size', '>= 100']], 'spaces around')
  t.same(forms('size==100'), [['size', '== 100']])
  t.same(forms('size=100'), [['size', '== 100']])
  t.same(forms('serial!=ABC,model<=m'), [['serial', 's!= abc'], ['model', 's<= m']], 'a shorthand operator on a string hint is its s form')
  t.same(forms('model=<in> big'), [['model', '<in> big']])
  t.same(forms('model=a\\,b,vendor=c\\\\d'), [['model', 's== a%2Cb'], ['vendor', 's== c%5Cd']], 'escaped comma and backslash')
  t.same(forms('rotational=false,name=sda'), [['rotational', false], ['name', 's== /dev/sda']])
  t.same(forms('{"model": "a,b", "size": ">= 100"}'), [['model', 's== a%2Cb'], ['size', '>= 100']], 'Ironic\'s JSON')
  t.equal(formatHints(parseHintsText('serial=ABC, size>=100')), 'serial=ABC, size>=100')
  t.throws(() => parseHintsText('serial=ABC,'), /an empty hint .*write a comma in a value as \\,/)
  t.throws(() => parseHintsText('serial=A,serial=B'), /root device hint serial is given twice/)
  t.throws(() => parseHintsText('colour=red'), /unknown root device hint "colour"/)
  t.throws(() => parseHintsText('=red'), /does not start with a hint's name/)
  t.throws(() => parseHintsText('serial ABC'), /expected = or an operator after "serial"/)
  t.throws(() => parseHintsText('size>=big'), /size is not an integer value/)
  t.throws(() => parseHintsText('rotational>=1'), /rotational takes no operator/)
  t.throws(() => parseHintsText('{"size": '), /not a JSON object/)
})
