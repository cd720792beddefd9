import t from 'tap'
import { crc32c } from '../../../agent/image/crc32c.js'

t.test('CRC-32C: the standard check value, and chaining as the kernel\'s crc32c does', async (t) => {
  // The catalogue's check value of CRC-32/ISCSI (CRC-32C) for "123456789".
  t.equal(~crc32c(0xffffffff, Buffer.from('123456789')) >>> 0, 0xe3069283)
  // RFC 3720 B.4: 32 bytes of zeros, and of 0xff.
  t.equal(~crc32c(0xffffffff, Buffer.alloc(32)) >>> 0, 0x8a9136aa)
  t.equal(~crc32c(0xffffffff, Buffer.alloc(32, 0xff)) >>> 0, 0x62a8ab43)
  const data = Buffer.from('ext4 checksums chain one call into the next')
  t.equal(crc32c(crc32c(0x12345678, data.subarray(0, 10)), data.subarray(10)), crc32c(0x12345678, data))
  t.equal(crc32c(7, Buffer.alloc(0)), 7)
})
