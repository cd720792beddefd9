import t from 'tap'
import { installedMessage } from '../../../agent/errors/installed-message.js'

t.test('the success message', async (t) => {
  t.equal(installedMessage({ diskPath: '/dev/sda', bytes: 10, imageBytes: 10, imageType: 'raw', mode: 'memory', checksumType: 'sha512' }),
    'Image installed on /dev/sda: 10 bytes of raw written from memory, sha512 verified.')
  t.equal(installedMessage({ diskPath: '/dev/sda', bytes: 10, imageBytes: 10, imageType: 'raw', mode: 'stream', checksumType: undefined }),
    'Image installed on /dev/sda: 10 bytes of raw written while streaming, no checksum given.')
  // A qcow2's file and its disk differ: both are said (2.5 MB of file, 8 MiB of disk).
  t.equal(installedMessage({ diskPath: '/dev/sda', bytes: 2555904, imageBytes: 8388608, imageType: 'qcow2', mode: 'memory', checksumType: 'sha256' }),
    'Image installed on /dev/sda: 2555904 bytes of qcow2 (8388608 bytes of disk) written from memory, sha256 verified.')
})
