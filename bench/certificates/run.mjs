// bench/certificates: what authenticating a data connection's peer costs, the first time a
// certificate is seen (the libp2p check in full: parse it, verify two signatures) and again
// (`peerOfCertificate` in @swarm/exchange knows it by its SHA-256). A peer presents one
// certificate on every connection of its pool and on every reconnect, so all but its first
// connection take the second path. CPU per check, on this thread.
//
// BENCH_CERTIFICATES (default 100): distinct certificates, each checked twice.
import { X509Certificate } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { generateCertificate } from '@libp2p/tls/utils'
import { certificateChecks, peerOfCertificate } from '@swarm/exchange'
import { fmt, saveResult } from '../lib/common.mjs'

const count = Number(process.env.BENCH_CERTIFICATES ?? 100)
if (!Number.isInteger(count) || count < 1) throw new Error(`BENCH_CERTIFICATES=${process.env.BENCH_CERTIFICATES}: expected a whole number, 1 or more`)

const certificates = []
for (let i = 0; i < count; i++) {
  const { cert } = await generateCertificate(await generateKeyPair('Ed25519'))
  const x509 = new X509Certificate(cert)
  certificates.push({ raw: x509.raw, validFrom: x509.validFrom, validTo: x509.validTo })
}

async function pass () {
  const before = process.cpuUsage()
  for (const c of certificates) await peerOfCertificate(c.raw, c.validFrom, c.validTo)
  const cpu = process.cpuUsage(before)
  return (cpu.user + cpu.system) / count
}

const first = await pass()
const verified = certificateChecks.verified
const again = await pass()
if (verified !== count || certificateChecks.cached !== count) throw new Error(`expected ${count} full checks then ${count} known, got ${verified} and ${certificateChecks.cached}`)
console.log(`certificates: ${count} libp2p TLS certificates, each authenticated twice; CPU per check`)
console.log(`  first time (checked in full): ${fmt(first, 0).padStart(6)} µs`)
console.log(`  again (known by its SHA-256): ${fmt(again, 1).padStart(6)} µs`)
console.log(`  ratio: ${fmt(first / again, 0)} ×`)
console.log(`  results: ${await saveResult('certificates', { count, firstMicroseconds: first, againMicroseconds: again })}`)
