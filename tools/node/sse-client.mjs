// sse-client.mjs <url>: a real EventSource client (the npm "eventsource"
// package, a WHATWG implementation) for the Go e2e tests. It prints one
// JSON line per thing that happens: {"kind":"open"}, {"kind":"event",
// "type","id","data"} and {"kind":"error"}; it closes itself once it gets
// a "cancelled" event (exit 0), and gives up after 20 s (exit 2).
import { EventSource } from 'eventsource'

const url = process.argv[2]
if (!url) {
  console.error('usage: node sse-client.mjs <url>')
  process.exit(64)
}

const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const es = new EventSource(url)

const timer = setTimeout(() => {
  print({ kind: 'timeout' })
  es.close()
  process.exit(2)
}, 20_000)

es.addEventListener('open', () => print({ kind: 'open' }))
es.addEventListener('error', () => {
  print({ kind: 'error', readyState: es.readyState })
  if (es.readyState === EventSource.CLOSED) {
    clearTimeout(timer)
    process.exit(1) // a fatal error: no reconnection
  }
})

for (const type of ['message', 'multi', 'cancelled']) {
  es.addEventListener(type, (e) => {
    print({ kind: 'event', type: e.type, id: e.lastEventId, data: e.data })
    if (type === 'cancelled') {
      es.close()
      clearTimeout(timer)
    }
  })
}
