import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'agents/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/setup/s3-server.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // two cores: more workers only contend for them
    maxWorkers: 2,
    pool: 'forks'
  }
})
