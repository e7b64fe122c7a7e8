// The bare `ws` server of the bench's child processes (the echo ceiling and
// the protocol floor): loopback, an ephemeral port, the daemon's path and
// limits, no compression. Announces its URL on stdout as one JSON line, the
// line spawnListeningChild (ws-load.ts) waits for.

import { WebSocketServer } from 'ws';

export function listenBare(): WebSocketServer {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    path: '/jsonrpc',
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
  });
  wss.once('listening', () => {
    const { port } = wss.address() as { port: number };
    process.stdout.write(`${JSON.stringify({ url: `ws://127.0.0.1:${port}/jsonrpc` })}\n`);
  });
  return wss;
}
