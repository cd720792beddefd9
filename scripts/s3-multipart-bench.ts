// The S3 multipart upload alone, timed against a server (scripts/s3-server.sh's): N MiB of made-up
// bytes (a 1 MiB random block repeated, or zeros) uploaded in parts of P MiB, K parts in flight;
// prints the time, the rate and the process's peak RSS. Outside `make test` (it stores N MiB).
// Usage: S3_ENDPOINT=… S3_ACCESS_KEY=… S3_SECRET_KEY=… [S3_REGION=…] [S3_BUCKET=…]
//          node dist/scripts/s3-multipart-bench.js --mib N [--part-mib P] [--in-flight K] [--key KEY]
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { uploadMultipart } from '../agent/upload/s3-multipart.js'

const MiB = 1024 * 1024
const { values } = parseArgs({
  options: { mib: { type: 'string' }, 'part-mib': { type: 'string' }, 'in-flight': { type: 'string' }, key: { type: 'string' } },
})
const totalMiB = Number(values.mib ?? 256)
const block = randomBytes(MiB)

async function * body (): AsyncGenerator<Buffer> {
  for (let i = 0; i < totalMiB; i++) yield Buffer.from(block) // a fresh 1 MiB each time, as a capture reads its disk
}

const env = (name: string): string => process.env[name] ?? (() => { throw new Error(`${name} is not set`) })()
const started = process.hrtime.bigint()
const result = await uploadMultipart({
  target: {
    endpoint: env('S3_ENDPOINT'), region: process.env.S3_REGION ?? 'us-east-1', bucket: process.env.S3_BUCKET ?? 'byoi-test',
    key: values.key ?? `bench/${totalMiB}MiB`, accessKeyId: env('S3_ACCESS_KEY'), secretAccessKey: env('S3_SECRET_KEY'),
  },
  body: body(),
  expectedBytes: totalMiB * MiB,
  partBytes: values['part-mib'] === undefined ? undefined : Number(values['part-mib']) * MiB,
  partsInFlight: values['in-flight'] === undefined ? undefined : Number(values['in-flight']),
})
const seconds = Number(process.hrtime.bigint() - started) / 1e9
console.log(JSON.stringify({
  ...result, seconds: Number(seconds.toFixed(2)), mibPerSecond: Number((totalMiB / seconds).toFixed(1)),
  peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
}))
