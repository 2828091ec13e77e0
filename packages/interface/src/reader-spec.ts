/**
 * What a chunk reader in another thread holds of its origin's spec (`Origin.chunkReaderSpec`):
 * the spec opened into what the reader uses (`open`), asked for anew once it has expired
 * (`current`) or at once when a refusal says its credentials went stale early (`refresh`). One
 * refresh at a time, whoever needs it; a reader without `fresh` keeps what it was given.
 */
import type { AbortOptions, ChunkReaderSpec } from './index.js'

export class RefreshingSpec<Opened> {
  private spec: ChunkReaderSpec
  private opened: Opened
  private refreshing: Promise<void> | undefined

  constructor (spec: ChunkReaderSpec, private readonly open: (spec: ChunkReaderSpec) => Opened, private readonly fresh?: (options: AbortOptions) => Promise<ChunkReaderSpec>) {
    this.spec = spec
    this.opened = open(spec)
  }

  /** what the spec opened into now (it may be stale: see `current`) */
  get init (): Opened {
    return this.opened
  }

  /** whether a fresh spec can be asked for */
  get refreshable (): boolean {
    return this.fresh !== undefined
  }

  /** what the spec opened into, after a refresh if it has expired */
  async current (options: AbortOptions = {}): Promise<Opened> {
    const expiresAt = this.spec.expiresAt
    if (expiresAt !== undefined && Date.now() >= expiresAt) await this.refresh(options)
    return this.opened
  }

  /** asks for a fresh spec now (no-op without `fresh`) */
  async refresh (options: AbortOptions = {}): Promise<void> {
    const fresh = this.fresh
    if (fresh === undefined) return
    this.refreshing ??= fresh(options).then(spec => {
      const opened = this.open(spec)
      this.spec = spec
      this.opened = opened
    }).finally(() => { this.refreshing = undefined })
    await this.refreshing
  }
}
