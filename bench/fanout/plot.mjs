// A line chart as a standalone SVG: x is N on a log2 axis, y is seconds on a log10 axis (the
// baseline grows with N while a fan-out should stay near T*, so both fit one chart).

const W = 760
const H = 440
const M = { left: 70, right: 240, top: 40, bottom: 56 }

const escape = s => String(s).replace(/[&<>"]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c])

/**
 * @param {{ title: string, subtitle?: string, series: Array<{ label: string, color: string, dashed?: boolean,
 *   points: Array<{ n: number, seconds: number, capped?: boolean }> }> }} chart capped: the value is a lower bound
 *   (some nodes had not finished when the run was stopped), drawn as an open marker
 */
export function lineChart ({ title, subtitle, series }) {
  const all = series.flatMap(s => s.points).filter(p => Number.isFinite(p.seconds) && p.seconds > 0)
  if (all.length === 0) throw new Error('nothing to plot')
  const ns = [...new Set(all.map(p => p.n))].sort((a, b) => a - b)
  const xMin = Math.log2(ns[0])
  const xMax = Math.max(Math.log2(ns.at(-1)), xMin + 1)
  const yLo = Math.floor(Math.log10(Math.min(...all.map(p => p.seconds))))
  const yHi = Math.ceil(Math.log10(Math.max(...all.map(p => p.seconds))))
  const yMin = yLo
  const yMax = Math.max(yHi, yLo + 1)
  const plotW = W - M.left - M.right
  const plotH = H - M.top - M.bottom
  const x = n => M.left + (Math.log2(n) - xMin) / (xMax - xMin) * plotW
  const y = s => M.top + plotH - (Math.log10(s) - yMin) / (yMax - yMin) * plotH

  const parts = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`)
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`)
  parts.push(`<text x="${M.left}" y="20" font-size="15" font-weight="bold">${escape(title)}</text>`)
  if (subtitle != null) parts.push(`<text x="${M.left}" y="35" fill="#555">${escape(subtitle)}</text>`)
  // grid and y labels: 1, 2, 5 per decade
  for (let d = yMin; d <= yMax; d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d
      if (Math.log10(v) > yMax + 1e-9) continue
      const yy = y(v)
      parts.push(`<line x1="${M.left}" x2="${M.left + plotW}" y1="${yy}" y2="${yy}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`)
      parts.push(`<text x="${M.left - 6}" y="${yy + 4}" text-anchor="end" fill="#333">${v >= 1 ? v : v.toPrecision(1)}</text>`)
    }
  }
  for (const n of ns) {
    const xx = x(n)
    parts.push(`<line x1="${xx}" x2="${xx}" y1="${M.top}" y2="${M.top + plotH}" stroke="#eee"/>`)
    parts.push(`<text x="${xx}" y="${M.top + plotH + 18}" text-anchor="middle" fill="#333">${n}</text>`)
  }
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`)
  parts.push(`<text x="${M.left + plotW / 2}" y="${H - 14}" text-anchor="middle">nodes pulling at once (N)</text>`)
  parts.push(`<text transform="translate(18 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle">completion time, s (log scale)</text>`)

  series.forEach((s, i) => {
    const points = s.points.filter(p => Number.isFinite(p.seconds) && p.seconds > 0).sort((a, b) => a.n - b.n)
    if (points.length > 0) {
      const d = points.map((p, k) => `${k === 0 ? 'M' : 'L'}${x(p.n).toFixed(1)},${y(p.seconds).toFixed(1)}`).join(' ')
      parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed === true ? ' stroke-dasharray="6 4"' : ''}/>`)
      for (const p of points) {
        parts.push(`<circle cx="${x(p.n).toFixed(1)}" cy="${y(p.seconds).toFixed(1)}" r="4" fill="${p.capped === true ? 'white' : s.color}" stroke="${s.color}" stroke-width="2"><title>${escape(`${s.label}, N=${p.n}: ${p.seconds.toFixed(1)} s${p.capped === true ? ' or more (stopped)' : ''}`)}</title></circle>`)
      }
    }
    const ly = M.top + 10 + i * 22
    const lx = M.left + plotW + 14
    parts.push(`<line x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed === true ? ' stroke-dasharray="6 4"' : ''}/>`)
    parts.push(`<text x="${lx + 32}" y="${ly + 4}">${escape(s.label)}</text>`)
  })
  if (series.some(s => s.points.some(p => p.capped === true))) {
    const ly = M.top + 10 + series.length * 22
    parts.push(`<circle cx="${M.left + plotW + 27}" cy="${ly}" r="4" fill="white" stroke="#333" stroke-width="2"/>`)
    parts.push(`<text x="${M.left + plotW + 46}" y="${ly + 4}">stopped: at least</text>`)
  }
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}
