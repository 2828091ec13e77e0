import { describe, expect, it } from 'vitest'
import { redactDeep, redactSecrets } from '../src/redact.js'

describe('redactSecrets', () => {
  it('masks the password of URL userinfo and keeps the rest', () => {
    expect(redactSecrets('origin s3://AKIA123:wJalr%2FXUt@models/prod failed')).toBe('origin s3://AKIA123:***@models/prod failed')
    expect(redactSecrets('https://user:tok3n@registry.example.com/v2/')).toBe('https://user:***@registry.example.com/v2/')
    expect(redactSecrets('https://:secretonly@host/x')).toBe('https://:***@host/x')
  })

  it('masks signatures and tokens in query strings (presigned S3 URLs, SAS tokens)', () => {
    const presigned = 'GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=abcdef0123&X-Amz-Expires=60'
    const out = redactSecrets(presigned)
    expect(out).not.toContain('abcdef0123')
    expect(out).not.toContain('AKIA%2F2026')
    expect(out).toContain('X-Amz-Algorithm=AWS4-HMAC-SHA256')
    expect(out).toContain('X-Amz-Expires=60')
    expect(redactSecrets('https://acct.blob.core.windows.net/c/b?sv=2024&sig=Zm9vYmFy%3D&se=2026')).toBe('https://acct.blob.core.windows.net/c/b?sv=2024&sig=***&se=2026')
  })

  it('leaves text without credentials as it is', () => {
    for (const text of ['s3://models/prod', 'file:///var/lib/swarm', 'user@host: a note', 'time 12:30 @ noon', 'https://host/path?page=2']) {
      expect(redactSecrets(text)).toBe(text)
    }
  })
})

describe('redactDeep', () => {
  it('masks strings at any depth of a record and in errors, without changing the input', () => {
    const err = new Error('GET s3://k:s3cr3t@b/x failed')
    const record = { msg: 'x', origin: 's3://k:s3cr3t@b', nested: { list: ['https://u:p4ss@h/'] }, err, n: 3 }
    const out = redactDeep(record)
    expect(JSON.stringify(out)).not.toMatch(/s3cr3t|p4ss/)
    expect(out.n).toBe(3)
    expect(out.err.message).toBe('GET s3://k:***@b/x failed')
    expect(out.err.stack).not.toContain('s3cr3t')
    expect(record.origin).toBe('s3://k:s3cr3t@b')
    expect(err.message).toContain('s3cr3t')
  })
})
