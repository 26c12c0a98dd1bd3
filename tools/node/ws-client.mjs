// A websocket client on npm's `ws`, for the Go e2e tests of wscancel
// (tools/e2e/ws_node_test.go): node ws-client.mjs <url> <scenario>.
//
// It prints one JSON object per line on stdout, for the test to assert:
//   {"event":"open"}
//   {"event":"message","data":"..."}
//   {"event":"close","code":1001,"reason":"shutdown"}
//   {"event":"terminated"}                 (after ws.terminate())
//   {"event":"error","message":"..."}
// and exits 0 once the scenario is over (1 on a usage error).
//
// Scenarios:
//   echo       send "hello from node", expect it back, close with 1000
//   listen     print every message until the server closes
//   terminate  after the first message, drop the TCP connection
//              (ws.terminate(): no close frame)
import WebSocket from 'ws';

const [url, scenario] = process.argv.slice(2);
if (!url || !['echo', 'listen', 'terminate'].includes(scenario)) {
  console.error('usage: node ws-client.mjs <url> echo|listen|terminate');
  process.exit(1);
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
// Give up rather than hang the test.
const deadline = setTimeout(() => {
  emit({ event: 'error', message: 'scenario timed out' });
  process.exit(2);
}, 20000);

const ws = new WebSocket(url);

ws.on('open', () => {
  emit({ event: 'open' });
  if (scenario === 'echo') ws.send('hello from node');
});

ws.on('message', (data) => {
  emit({ event: 'message', data: data.toString() });
  if (scenario === 'echo') ws.close(1000, 'bye');
  if (scenario === 'terminate') {
    ws.terminate();
    emit({ event: 'terminated' });
    clearTimeout(deadline);
  }
});

ws.on('close', (code, reason) => {
  if (scenario !== 'terminate') emit({ event: 'close', code, reason: reason.toString() });
  clearTimeout(deadline);
});

ws.on('error', (err) => emit({ event: 'error', message: err.message }));
