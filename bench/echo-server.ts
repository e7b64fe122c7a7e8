// The ceiling for the JSON-RPC benches: a bare `ws` server, in its own
// process like the daemon, answering each request with the same JSON the
// daemon answers (the result captured from the daemon, the request's id
// patched in). It parses the request only to learn the id and method.
//
// usage: node --import tsx bench/echo-server.ts RESULTS.json
//   RESULTS.json: {"Host.ping": "true", "VM.getStats": "{...}"} (raw result JSON text per method)
// Prints one line {"url": "..."} once listening.

import { readFileSync } from 'node:fs';
import { listenBare } from './bare-ws.js';

const results = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as Record<string, string>;
const wss = listenBare();
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    const req = JSON.parse(data.toString()) as { id?: unknown; method?: unknown };
    const result = results[String(req.method)] ?? 'null';
    ws.send(`{"jsonrpc":"2.0","id":${JSON.stringify(req.id)},"result":${result}}`);
  });
});
process.once('SIGTERM', () => process.exit(0));
process.once('SIGINT', () => process.exit(0));
