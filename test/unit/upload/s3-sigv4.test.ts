import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import {
  amzDate, canonicalRequest, EMPTY_SHA256, encodeS3Path, signingKey, signS3, signV4, stringToSign, uriEncode, type SigV4Request,
} from '../../../agent/upload/s3-sigv4.js'

/**
 * SigV4 against two references that are not ours: the published vectors (AWS's "Signature Version 4
 * test suite", files aws-sig-v4-test-suite/<name>/<name>.{req,creq,sts,authz}, as kept in
 * bazelbuild/bazel's third_party; and the worked examples of S3's "Signature Calculations for the
 * Authorization Header"), and botocore's own S3SigV4Auth (Debian's python3-botocore), run on the
 * same requests with its clock fixed.
 */

const SUITE = {
  credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
  region: 'us-east-1',
  service: 'service',
  now: new Date('2015-08-30T12:36:00Z'),
}
const SUITE_SCOPE = 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request'
const HOST = { Host: 'example.amazonaws.com' }

function sha256 (text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

t.test('aws-sig-v4-test-suite: canonical request, string to sign and Authorization', async (t) => {
  interface Vector { name: string; request: SigV4Request; authz: string }
  const get = (path: string, query: Array<[string, string]> = [], headers: Record<string, string> = {}): SigV4Request =>
    ({ method: 'GET', path, query, headers: { ...HOST, ...headers }, payloadHash: EMPTY_SHA256 })
  const vectors: Vector[] = [
    {
      name: 'get-vanilla',
      request: get('/'),
      authz: 'SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
    },
    {
      name: 'get-vanilla-query-order-key',
      request: get('/', [['Param1', 'value2'], ['Param1', 'Value1']]),
      authz: 'SignedHeaders=host;x-amz-date, Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1',
    },
    {
      name: 'get-vanilla-empty-query-key',
      request: get('/', [['Param1', 'value1']]),
      authz: 'SignedHeaders=host;x-amz-date, Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb',
    },
    {
      name: 'get-vanilla-utf8-query',
      request: get('/', [['ሴ', 'bar']]),
      authz: 'SignedHeaders=host;x-amz-date, Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04',
    },
    {
      name: 'get-utf8',
      request: get(encodeS3Path('ሴ')),
      authz: 'SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85',
    },
    {
      name: 'post-header-key-sort',
      request: { ...get('/', [], { 'My-Header1': 'value1' }), method: 'POST' },
      authz: 'SignedHeaders=host;my-header1;x-amz-date, Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c',
    },
    {
      name: 'post-x-www-form-urlencoded',
      request: {
        method: 'POST', path: '/', query: [], headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...HOST }, payloadHash: sha256('Param1=value1'),
      },
      authz: 'SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a',
    },
  ]
  for (const { name, request, authz } of vectors) {
    t.equal(signV4(request, SUITE).authorization, `${SUITE_SCOPE}, ${authz}`, name)
  }

  // get-vanilla-query-order-key.creq and .sts, step by step.
  const request = get('/', [['Param1', 'value2'], ['Param1', 'Value1']], { 'X-Amz-Date': '20150830T123600Z' })
  const { text } = canonicalRequest(request)
  t.equal(text, 'GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n' +
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'canonical request (.creq)')
  t.equal(stringToSign(text, SUITE.now, SUITE.region, SUITE.service),
    'AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89',
    'string to sign (.sts)')
  // AWS's signing-key example ("Examples of how to derive a signing key": iam, 20150830).
  t.equal(signingKey(SUITE.credentials.secretAccessKey, SUITE.now, 'us-east-1', 'iam').toString('hex'),
    'c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9', 'signing key')
})

t.test('aws-sig-v4-test-suite post-sts-header-before: the session token signed as x-amz-security-token', async (t) => {
  const token = 'AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUu' +
    'wthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+x' +
    'o0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=='
  const added = signV4({ method: 'POST', path: '/', query: [], headers: HOST, payloadHash: EMPTY_SHA256 },
    { ...SUITE, credentials: { ...SUITE.credentials, sessionToken: token } })
  t.equal(added['x-amz-security-token'], token)
  t.equal(added.authorization, `${SUITE_SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, ` +
    'Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead')
})

t.test('S3 documentation examples: GET object with Range, PUT object, GET ?lifecycle, list with a query', async (t) => {
  const scope = {
    credentials: { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
    region: 'us-east-1',
    now: new Date('2013-05-24T00:00:00Z'),
  }
  const host = { Host: 'examplebucket.s3.amazonaws.com' }
  const signature = (request: SigV4Request): string => /Signature=([0-9a-f]{64})$/.exec(signS3(request, scope).authorization ?? '')?.[1] ?? ''
  t.equal(signature({ method: 'GET', path: '/test.txt', query: [], headers: { ...host, Range: 'bytes=0-9' }, payloadHash: EMPTY_SHA256 }),
    'f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41', 'GET Object')
  const put = signS3({
    method: 'PUT',
    path: encodeS3Path('test$file.text'),
    query: [],
    headers: { ...host, Date: 'Fri, 24 May 2013 00:00:00 GMT', 'x-amz-storage-class': 'REDUCED_REDUNDANCY' },
    payloadHash: sha256('Welcome to Amazon S3.'),
  }, scope)
  t.equal(put.authorization, 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, ' +
    'SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, ' +
    'Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd', 'PUT Object')
  t.equal(put['x-amz-content-sha256'], '44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072')
  t.equal(signature({ method: 'GET', path: '/', query: [['lifecycle', '']], headers: host, payloadHash: EMPTY_SHA256 }),
    'fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543', 'GET Bucket Lifecycle')
  t.equal(signature({ method: 'GET', path: '/', query: [['prefix', 'J'], ['max-keys', '2']], headers: host, payloadHash: EMPTY_SHA256 }),
    '34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7', 'GET Bucket (List Objects)')
})

t.test('uriEncode and amzDate', async (t) => {
  t.equal(uriEncode('-._~AZaz09'), '-._~AZaz09')
  t.equal(uriEncode('a b/c+d=e$ሴ'), 'a%20b%2Fc%2Bd%3De%24%E1%88%B4')
  t.equal(uriEncode('a b/c', true), 'a%20b/c')
  t.equal(encodeS3Path('bucket', 'images/web 1.qcow2'), '/bucket/images/web%201.qcow2')
  t.equal(amzDate(new Date('2026-12-04T11:22:33.456Z')), '20261204T112233Z')
})

// Debian's botocore (python3-botocore): the one the brief names; the pyenv python3 on PATH may carry another.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'
const BOTOCORE_SIGN = fileURLToPath(new URL('../../helpers/botocore-sign.py', import.meta.url))

t.test('botocore\'s S3SigV4Auth signs the multipart requests exactly as we do', async (t) => {
  const now = new Date('2026-12-04T11:22:33Z')
  const credentials = { accessKeyId: 'Q8ZK2M1XW0R7TC4PLA9B', secretAccessKey: 'r8Yb2fJk0Qw9+Lm/Xc3Vn5Tg7Hs1Pd4Ae6Zu0Oi2' }
  const withToken = { ...credentials, sessionToken: 'FwoGZXIvYXdzEJr//////////wEaDM+token/with=chars' }
  const body = 'ab\u0000c'.repeat(1000)
  const complete = '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"x"</ETag></Part></CompleteMultipartUpload>'
  interface Case {
    name: string
    method: string
    host: string
    path: string
    query: Array<[string, string]>
    headers: Record<string, string>
    body: string
    credentials: typeof withToken | typeof credentials
  }
  const host = '127.0.0.1:41234'
  const cases: Case[] = [
    {
      name: 'CreateMultipartUpload', method: 'POST', host, path: encodeS3Path('byoi-test', 'images/web-1.qcow2'), query: [['uploads', '']],
      headers: {}, body: '', credentials,
    },
    {
      name: 'UploadPart, a key with spaces, $ and UTF-8, a session token',
      method: 'PUT', host, path: encodeS3Path('byoi-test', 'a b/ሴ$+x.raw.zst'), query: [['partNumber', '12'], ['uploadId', '2~Ab-c_d.E/f+g=']],
      headers: { 'Content-Length': String(Buffer.byteLength(body)) }, body, credentials: withToken,
    },
    {
      name: 'CompleteMultipartUpload', method: 'POST', host, path: encodeS3Path('byoi-test', 'k'), query: [['uploadId', 'u1']],
      headers: { 'Content-Type': 'application/xml' }, body: complete, credentials,
    },
    {
      name: 'AbortMultipartUpload, virtual-host style', method: 'DELETE', host: 'byoi-test.s3.example.invalid', path: encodeS3Path('k'),
      query: [['uploadId', 'u1']], headers: {}, body: '', credentials,
    },
  ]
  const input = cases.map((c) => ({
    method: c.method,
    url: `http://${c.host}${c.path}`,
    params: c.query,
    headers: c.headers,
    body: c.body,
    accessKey: c.credentials.accessKeyId,
    secretKey: c.credentials.secretAccessKey,
    token: 'sessionToken' in c.credentials ? c.credentials.sessionToken : null,
    region: 'eu-west-3',
    timestamp: amzDate(now),
  }))
  const botocore = JSON.parse(execFileSync(PYTHON, [BOTOCORE_SIGN], { input: JSON.stringify(input), encoding: 'utf8' })) as Array<Record<string, string>>
  cases.forEach((c, i) => {
    const ours = signS3({ method: c.method, path: c.path, query: c.query, headers: { host: c.host, ...c.headers }, payloadHash: sha256(c.body) },
      { credentials: c.credentials, region: 'eu-west-3', now })
    const theirs = botocore[i] ?? {}
    t.equal(ours.authorization, theirs.Authorization, `${c.name}: Authorization`)
    t.equal(ours['x-amz-content-sha256'], theirs['X-Amz-Content-SHA256'], `${c.name}: x-amz-content-sha256`)
    t.equal(ours['x-amz-date'], theirs['X-Amz-Date'], `${c.name}: x-amz-date`)
    t.equal(ours['x-amz-security-token'], theirs['X-Amz-Security-Token'], `${c.name}: x-amz-security-token`)
  })
})
