import t from 'tap'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { buildIso9660 } from '../../../agent/configdrive/build-iso9660.js'
import { readIsoVolumeId } from '../../../agent/configdrive/read-iso-volume-id.js'
import { attachLoop, tempDir } from '../../helpers/disk-files.js'
import { blkid, bufferReader, fileReader, LONG_NAME, run, runBytes, sampleFiles } from './referees.js'

const tmp = tempDir('byoi-iso-')
t.teardown(tmp.remove)

const files = sampleFiles()
const timestamp = new Date(Date.UTC(2024, 4, 17, 12, 34, 56))
const iso = join(tmp.path, 'ours.iso')
writeFileSync(iso, buildIso9660(files, { timestamp }))

/** Names under a directory as `isoinfo -l` prints them with the given extension flag. */
function isoinfoNames (flag: string[], dir: string): string[] {
  const out = run('isoinfo', [...flag, '-l', '-i', iso])
  const section = out.stdout.split('Directory listing of ').find((block) => block.startsWith(`${dir}\n`)) ?? ''
  return section.split('\n').slice(1)
    .map((line) => /\]\s+(.*?)\s*$/.exec(line)?.[1] ?? '')
    .filter((name) => name !== '' && name !== '.' && name !== '..' && name !== '\u0000' && name !== '\u0001')
}

t.test('the size is the content, in 2048-byte blocks', async (t) => {
  const size = readFileSync(iso).length
  t.equal(size % 2048, 0)
  t.ok(size < 300 * 1024, `${size} bytes for ~200 KiB of files`)
})

t.test('isoinfo: Rock Ridge and Joliet names, lower case and long, intact', async (t) => {
  const expected = [LONG_NAME, 'meta_data.json', 'user_data', 'vendor_data.json'].sort()
  t.same(isoinfoNames(['-R'], '/openstack/latest/').sort(), expected, 'Rock Ridge')
  t.same(isoinfoNames(['-J'], '/openstack/latest/').sort(), expected, 'Joliet')
  t.same(isoinfoNames(['-R'], '/openstack/').sort(), ['content', 'latest'])
  t.same(isoinfoNames(['-J'], '/openstack/content/'), ['0000'])
  // The primary tree holds ISO 9660 level-2 identifiers, what a reader without extensions sees.
  t.same(isoinfoNames([], '/OPENSTACK/LATEST/').sort(), ['A_FILE_NAME_LONGER_THAN_THI.TXT;1', 'META_DATA.JSON;1', 'USER_DATA.;1', 'VENDOR_DATA.JSON;1'])
  const described = run('isoinfo', ['-d', '-i', iso]).stdout
  t.match(described, /Volume id: config-2\n/)
  t.match(described, /Joliet with UCS level 3 found/)
  t.match(described, /Rock Ridge signatures version 1 found/)
})

t.test('isoinfo extracts every file byte for byte, through Rock Ridge and through Joliet', async (t) => {
  for (const file of files) {
    t.ok(runBytes('isoinfo', ['-R', '-x', `/${file.path}`, '-i', iso]).equals(file.data), `RR ${file.path}`)
    t.ok(runBytes('isoinfo', ['-J', '-x', `/${file.path}`, '-i', iso]).equals(file.data), `Joliet ${file.path}`)
  }
})

t.test('xorriso lists the Rock Ridge tree and extracts it byte for byte', async (t) => {
  const listed = run('xorriso', ['-indev', iso, '-find', '/', '-exec', 'lsdl'])
  t.equal(listed.status, 0, listed.stderr)
  t.notMatch(listed.stderr, /SORRY|FAILURE|WARNING/, 'no complaint while loading the image')
  for (const file of files) t.match(listed.stdout, `'/${file.path}'`)
  t.match(listed.stdout, /-r--r--r-- +1 0 +0 +204817 May 17 +2024 '\/openstack\/latest\/user_data'/, 'Rock Ridge PX and TF: mode, size, date')
  const out = join(tmp.path, 'xorriso-tree')
  const extracted = run('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/', out])
  t.equal(extracted.status, 0, extracted.stderr)
  for (const file of files) t.ok(readFileSync(join(out, file.path)).equals(file.data), file.path)
})

t.test('isovfy (genisoimage) finds no error in the structure', async (t) => {
  for (const path of [iso, join(tmp.path, 'isovfy-clash.iso')]) {
    if (path !== iso) {
      writeFileSync(path, buildIso9660([{ path: 'd/some-file.txt', data: Buffer.from('1') }, { path: 'd/some_file.txt', data: Buffer.from('2') }]))
    }
    const checked = run('isovfy', [path])
    t.equal(checked.status, 0, checked.stderr)
    t.match(checked.stdout, /No errors found/, checked.stdout)
  }
})

t.test('blkid: LABEL="config-2" TYPE="iso9660", the date as UUID', async (t) => {
  const tags = blkid(iso)
  t.equal(tags.LABEL, 'config-2')
  t.equal(tags.TYPE, 'iso9660')
  t.equal(tags.UUID, '2024-05-17-12-34-56-00', 'from the volume modification date')
  t.match(tags.VERSION, /^Joliet/)
})

t.test('blkid on a loop device (512-byte sectors) sees the same label', async (t) => {
  const loop = attachLoop(iso)
  t.teardown(loop.detach)
  const tags = blkid(loop.device)
  t.equal(tags.LABEL, 'config-2')
  t.equal(tags.TYPE, 'iso9660')
})

t.test('deterministic: the same files and timestamp give the same bytes', async (t) => {
  const again = buildIso9660(sampleFiles(), { timestamp })
  t.ok(again.equals(readFileSync(iso)))
  t.ok(buildIso9660(files).equals(buildIso9660(files)), 'the default timestamp is fixed')
  t.notOk(buildIso9660(files, { timestamp: new Date(Date.UTC(2025, 0, 1)) }).equals(again), 'the timestamp is recorded')
})

t.test('the same structure as genisoimage -R -J -V config-2 of the same tree', async (t) => {
  const tree = join(tmp.path, 'tree')
  for (const file of files) {
    mkdirSync(dirname(join(tree, file.path)), { recursive: true })
    writeFileSync(join(tree, file.path), file.data)
  }
  const theirs = join(tmp.path, 'genisoimage.iso')
  const made = run('genisoimage', ['-o', theirs, '-quiet', '-R', '-J', '-V', 'config-2', tree])
  t.equal(made.status, 0, made.stderr)
  const describe = (path: string): string[] => run('isoinfo', ['-d', '-i', path]).stdout.split('\n')
    .filter((line) => /^(Volume id|Logical block size|Joliet|Rock Ridge)/.test(line))
  t.same(describe(iso), describe(theirs), 'volume id, block size, Joliet level, Rock Ridge version')
  t.same(isoinfoNames(['-R'], '/openstack/latest/').sort(), (() => {
    const out = run('isoinfo', ['-R', '-l', '-i', theirs]).stdout
    const section = out.split('Directory listing of ').find((block) => block.startsWith('/openstack/latest/\n')) ?? ''
    return section.split('\n').slice(1)
      .map((line) => /\]\s+(.*?)\s*$/.exec(line)?.[1] ?? '')
      .filter((name) => name !== '' && name !== '.' && name !== '..')
      .sort()
  })(), 'the same Rock Ridge names')
  t.equal(blkid(theirs).LABEL, blkid(iso).LABEL)
  t.equal(blkid(theirs).TYPE, blkid(iso).TYPE)
  // Both carry "config-2" in the PVD and the Joliet SVD (sector 17), UCS-2 big-endian.
  for (const path of [iso, theirs]) {
    const image = readFileSync(path)
    t.equal(image.toString('latin1', 16 * 2048 + 40, 16 * 2048 + 72).trimEnd(), 'config-2', `${path} PVD`)
    t.equal(image.subarray(17 * 2048 + 40, 17 * 2048 + 56).swap16().toString('utf16le'), 'config-2', `${path} Joliet SVD`)
    t.equal(await readIsoVolumeId(fileReader(path)), 'config-2', `readIsoVolumeId ${path}`)
  }
})

t.test('readIsoVolumeId: undefined for what is not ISO 9660', async (t) => {
  t.equal(await readIsoVolumeId(bufferReader(Buffer.alloc(64 * 1024))), undefined)
  t.equal(await readIsoVolumeId(bufferReader(Buffer.alloc(100))), undefined, 'too short')
  t.equal(await readIsoVolumeId(bufferReader(buildIso9660(files, { volumeId: 'CONFIG-2' }))), 'CONFIG-2')
})

t.test('names and options the filesystems can not hold are refused', async (t) => {
  const data = Buffer.from('x')
  t.throws(() => buildIso9660([{ path: 'a/b', data }, { path: 'a/B', data }]), /given twice/)
  t.throws(() => buildIso9660([{ path: 'a', data }, { path: 'a/b', data }]), /clashes/)
  t.throws(() => buildIso9660([{ path: 'a//b', data }]), /empty component/)
  t.throws(() => buildIso9660([{ path: '../b', data }]), /".."/)
  t.throws(() => buildIso9660([{ path: 'a:b', data }]), /can not store/)
  t.throws(() => buildIso9660([{ path: 'x'.repeat(65), data }]), /longer than 64/)
  t.throws(() => buildIso9660([{ path: 'a', data }], { volumeId: 'x'.repeat(17) }), /volume id/)
  t.throws(() => buildIso9660([{ path: 'a', data }], { timestamp: new Date(Number.NaN) }), /not a valid date/)
  t.throws(() => buildIso9660([{ path: 'big', data: Buffer.alloc(64 * 1024 * 1024) }]), /more than/)
})

t.test('primary identifiers that clash once mapped get distinct names; both trees still right', async (t) => {
  const clash = [
    { path: 'dir/some-file.txt', data: Buffer.from('1') },
    { path: 'dir/some_file.txt', data: Buffer.from('2') },
    { path: 'dir/Some+File.txt', data: Buffer.from('3') },
  ]
  const path = join(tmp.path, 'clash.iso')
  writeFileSync(path, buildIso9660(clash))
  for (const file of clash) {
    t.ok(runBytes('isoinfo', ['-R', '-x', `/${file.path}`, '-i', path]).equals(file.data), file.path)
    t.ok(runBytes('isoinfo', ['-J', '-x', `/${file.path}`, '-i', path]).equals(file.data), file.path)
  }
  const primary = run('isoinfo', ['-l', '-i', path]).stdout
  t.match(primary, /SOME_FILE\.TXT;1/)
  t.match(primary, /SOME_FILE1\.TXT;1/)
  t.match(primary, /SOME_FILE2\.TXT;1/)
})
