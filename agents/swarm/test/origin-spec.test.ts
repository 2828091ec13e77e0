import { ConfigError, defaultConfig } from '@swarm/config'
import { silentLogger } from '@swarm/interface'
import { describe, expect, it } from 'vitest'
import { NoOriginError, createOrigin, originSpec } from '@swarm/agent'

const config = (origin: string): ReturnType<typeof defaultConfig> => ({ ...defaultConfig({}), origin })

describe('origins from the configuration', () => {
  it('names the one adapter each URL needs, and opens it', async () => {
    const cases: Array<[string, string]> = [
      ['s3://bucket/prefix', 's3'],
      ['file:///tmp/models', 'file'],
      ['https://models.example.com/prefix', 'http'],
      ['https://account.blob.core.windows.net/container/prefix', 'azure'],
      ['az://account/container/prefix', 'azure'],
      ['oci://registry.example.com/namespace', 'oci']
    ]
    for (const [url, adapter] of cases) {
      expect(originSpec(config(url)).adapter).toBe(adapter)
      const origin = createOrigin(config(url), silentLogger)
      expect(typeof origin.getChunk).toBe('function')
      await origin.close()
    }
  })

  it('refuses a missing origin and a URL its adapter cannot take as configuration errors', () => {
    expect(() => createOrigin(config(''), silentLogger)).toThrow(NoOriginError)
    expect(() => createOrigin(config('file://relative'), silentLogger)).toThrow(ConfigError)
  })
})
