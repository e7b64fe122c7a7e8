// Host.ping throughput through the full rpc stack (ws + dispatch + ajv +
// logging) against a bare `ws` server that echoes each message back, over 1
// and 16 connections, same process, same client, alternating runs.
// Goal (issue 4): at least 70% of the echo server's rate.
import { pino } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import type { MethodSpec } from '../src/rpc/method.js';
import { RpcServer } from '../src/rpc/server.js';
import { type BenchResult, summarizeHigherIsBetter } from './lib.js';

const SAMPLE_MS = 1000;
const SAMPLES = 3;
const WINDOW = 16; // requests kept in flight per connection

const ping: MethodSpec = {
  name: 'Host.ping',
  summary: 'Liveness',
  params: { type: 'object', properties: {}, additionalProperties: false },
  result: { type: 'boolean' },
  logLevel: 'debug',
  handler: async () => true,
};

async function echoServer(): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
  });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  const port = (wss.address() as { port: number }).port;
  return {
    url: `ws://127.0.0.1:${port}/jsonrpc`,
    close: () =>
      new Promise((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  };
}

async function ourServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server = await RpcServer.start({
    host: '127.0.0.1',
    port: 0,
    methods: [ping],
    logger: pino({ level: 'info' }, pino.destination('/dev/null')),
    apiVersion: 'bench',
    serverName: 'bench',
  });
  return { url: server.url(), close: () => server.close({ drainMs: 100 }) };
}

/** Replies per second over SAMPLE_MS with `conns` connections each keeping WINDOW requests in flight. */
async function measure(url: string, conns: number): Promise<number> {
  const sockets = await Promise.all(
    Array.from(
      { length: conns },
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(url, { perMessageDeflate: false });
          ws.once('open', () => resolve(ws));
          ws.once('error', reject);
        }),
    ),
  );
  let replies = 0;
  let running = true;
  let id = 0;
  const send = (ws: WebSocket) => ws.send(`{"jsonrpc":"2.0","id":${++id},"method":"Host.ping"}`);
  for (const ws of sockets) {
    ws.on('message', () => {
      replies++;
      if (running) send(ws);
    });
  }
  // Warm up, then count.
  for (const ws of sockets) for (let i = 0; i < WINDOW; i++) send(ws);
  await new Promise((r) => setTimeout(r, 200));
  const start = replies;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SAMPLE_MS));
  const rate = ((replies - start) * 1000) / (performance.now() - t0);
  running = false;
  for (const ws of sockets) ws.terminate();
  return rate;
}

export async function run(): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  for (const conns of [1, 16]) {
    const ours: number[] = [];
    const echo: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      for (const [make, into] of [
        [ourServer, ours],
        [echoServer, echo],
      ] as const) {
        const s = await make();
        into.push(await measure(s.url, conns));
        await s.close();
      }
    }
    const o = summarizeHigherIsBetter(ours, 'req/s');
    const b = summarizeHigherIsBetter(echo, 'req/s');
    const ratio = o.median / b.median;
    results.push({
      name: `rpc Host.ping x${conns} conn`,
      what: `Host.ping replies per second over ${conns} connection(s), ${WINDOW} in flight each (higher is better)`,
      runs: SAMPLES,
      ours: o,
      baseline: { ...b, name: 'bare ws echo' },
      ratio,
      target: 'ratio >= 0.7',
      pass: ratio >= 0.7,
    });
  }
  return results;
}
