// The BitTorrent baseline's tracker: bittorrent-tracker's server, HTTP only (aria2c announces over
// HTTP; no UDP or WebSocket tracker is needed), run in the origin's namespace by run.mjs.
// Prints one JSON line when listening and one per announce event, so the bench can wait for the
// seeder before it releases the leechers.
//
//   node tracker.mjs <host> <port> <announce interval in s>
import { Server } from 'bittorrent-tracker'

const [host, portText, intervalText] = process.argv.slice(2)
const port = Number(portText)
const intervalS = Number(intervalText ?? 5)
if (host == null || !Number.isInteger(port) || port < 1 || !(intervalS > 0)) {
  process.stderr.write('usage: node tracker.mjs <host> <port> <announce interval in s>\n')
  process.exit(2)
}

const server = new Server({ http: true, udp: false, ws: false, stats: false, interval: intervalS * 1000 })
const say = line => { process.stdout.write(JSON.stringify(line) + '\n') }
server.on('error', err => {
  process.stderr.write(`tracker: ${err.message}\n`)
  process.exit(1)
})
server.on('warning', err => { process.stderr.write(`tracker warning: ${err.message}\n`) })
for (const event of ['start', 'complete', 'stop']) server.on(event, addr => { say({ event, addr }) })
server.on('listening', () => { say({ event: 'listening', announce: `http://${host}:${port}/announce` }) })
server.listen(port, host)
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => { server.close(() => process.exit(0)) })
