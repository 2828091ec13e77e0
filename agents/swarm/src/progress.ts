/**
 * How a long transfer reports itself: a progress bar on a terminal, a plain line every few
 * seconds otherwise (CI logs, `kubectl logs`), and one JSON object per line with `--json`.
 */

import cliProgress from 'cli-progress'

export type OutputMode = 'tty' | 'plain' | 'json'

export interface ProgressSnapshot {
  doneBytes: number
  totalBytes: number
  detail?: Record<string, unknown>
}

export interface Reporter {
  update(snapshot: ProgressSnapshot): void
  stop(): void
}

const MiB = 1024 * 1024

export function formatBytes (bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`
  return `${bytes} B`
}

export function outputMode (json: boolean, stream: NodeJS.WriteStream = process.stderr): OutputMode {
  if (json) return 'json'
  return stream.isTTY === true ? 'tty' : 'plain'
}

export function reporter (mode: OutputMode, label: string, write: (line: string) => void = line => process.stderr.write(line + '\n')): Reporter {
  const started = performance.now()
  const rate = (done: number): number => done / Math.max((performance.now() - started) / 1000, 1e-3)

  if (mode === 'tty') {
    const bar = new cliProgress.SingleBar({
      format: `${label} [{bar}] {percentage}% | {done}/{total} | {rate}/s | ETA {eta_formatted}{status}`,
      hideCursor: true,
      etaBuffer: 50,
      stream: process.stderr
    }, cliProgress.Presets.shades_classic)
    let begun = false
    return {
      update ({ doneBytes, totalBytes, detail }) {
        const payload = { done: formatBytes(doneBytes), total: formatBytes(totalBytes), rate: formatBytes(rate(doneBytes)), status: statusOf(detail) }
        if (!begun) {
          bar.start(totalBytes, doneBytes, payload)
          begun = true
        } else {
          bar.setTotal(totalBytes)
          bar.update(doneBytes, payload)
        }
      },
      stop () { if (begun) bar.stop() }
    }
  }

  if (mode === 'json') {
    let last = 0
    return {
      update ({ doneBytes, totalBytes, detail }) {
        const now = performance.now()
        if (now - last < 500 && doneBytes < totalBytes) return
        last = now
        process.stdout.write(JSON.stringify({ event: 'progress', label, doneBytes, totalBytes, bytesPerSecond: Math.round(rate(doneBytes)), ...detail }) + '\n')
      },
      stop () {}
    }
  }

  let last = 0
  return {
    update ({ doneBytes, totalBytes, detail }) {
      const now = performance.now()
      if (now - last < 2000 && doneBytes < totalBytes) return
      last = now
      const pct = totalBytes === 0 ? 100 : Math.floor(doneBytes / totalBytes * 100)
      write(`${label}: ${pct}% ${formatBytes(doneBytes)}/${formatBytes(totalBytes)} at ${formatBytes(rate(doneBytes))}/s${statusOf(detail)}`)
    },
    stop () {}
  }
}

/** A status line a caller puts in `detail.status` (e.g. a fleet's nodes done and pulling), shown after the figures. */
function statusOf (detail: Record<string, unknown> | undefined): string {
  return typeof detail?.status === 'string' && detail.status !== '' ? ` | ${detail.status}` : ''
}
