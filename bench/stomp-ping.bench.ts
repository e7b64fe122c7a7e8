// Host.ping2 over STOMP beside the same call over the WebSocket, on one rpc
// server (in process), same run, alternating: throughput with 16 requests in
// flight per connection over 1 and 8 connections, and latency with one in
// flight. Both clients are minimal (raw frames; replies counted, not parsed)
// so the figures are the server's transport cost. The baseline here is the
// daemon's own WebSocket path; rpc-ping compares that one with a bare `ws`.
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import type { MethodSpec } from '../src/rpc/method.js';
import { RpcServer } from '../src/rpc/server.js';
import { type BenchResult, round, summarize, summarizeHigherIsBetter } from './lib.js';

const SAMPLE_MS = 1000;
const SAMPLES = 3;
const WINDOW = 16;
const LATENCY_CALLS = 2000;

const ping2: MethodSpec = {
  name: 'Host.ping2',
  summary: 'Liveness (VDSM: the engine polls it)',
  params: { type: 'object', properties: {}, additionalProperties: false },
  result: { type: 'boolean' },
  logLevel: 'debug',
  handler: async () => true,
};

interface Conn {
  send(id: number): void;
  onReply(fn: (n: number) => void): void;
  close(): void;
}

async function wsConn(url: string): Promise<Conn> {
  const ws = await new Promise<WebSocket>((resolve, reject) => {
    const w = new WebSocket(url, { perMessageDeflate: false });
    w.once('open', () => resolve(w));
    w.once('error', reject);
  });
  return {
    send: (id) => ws.send(`{"jsonrpc":"2.0","id":${id},"method":"Host.ping2"}`),
    onReply: (fn) => ws.on('message', () => fn(1)),
    close: () => ws.terminate(),
  };
}

async function stompConn(port: number): Promise<Conn> {
  const s = await new Promise<Socket>((resolve, reject) => {
    const c = connect(port, '127.0.0.1', () => resolve(c));
    c.once('error', reject);
  });
  s.setNoDelay(true);
  // CONNECT and the reply subscription; the CONNECTED frame's NUL is skipped below.
  s.write(
    'CONNECT\naccept-version:1.2\nhost:bench\n\n\0SUBSCRIBE\nid:1\ndestination:jms.topic.vdsm_responses\n\n\0',
  );
  let skip = 1;
  const listeners: ((n: number) => void)[] = [];
  s.on('data', (d: Buffer) => {
    let n = 0;
    for (let i = d.indexOf(0); i !== -1; i = d.indexOf(0, i + 1)) n++;
    const used = Math.min(skip, n);
    skip -= used;
    if (n - used > 0) for (const l of listeners) l(n - used);
  });
  return {
    send: (id) => {
      const body = `{"jsonrpc":"2.0","id":${id},"method":"Host.ping2"}`;
      s.write(
        `SEND\ndestination:jms.topic.vdsm_requests\nreply-to:jms.topic.vdsm_responses\ncontent-length:${body.length}\n\n${body}\0`,
      );
    },
    onReply: (fn) => listeners.push(fn),
    close: () => s.destroy(),
  };
}

type Dial = () => Promise<Conn>;

async function throughput(dial: Dial, conns: number): Promise<number> {
  const cs = await Promise.all(Array.from({ length: conns }, dial));
  let replies = 0;
  let running = true;
  let id = 0;
  for (const c of cs) {
    c.onReply((n) => {
      replies += n;
      if (running) for (let i = 0; i < n; i++) c.send(++id);
    });
  }
  for (const c of cs) for (let i = 0; i < WINDOW; i++) c.send(++id);
  await new Promise((r) => setTimeout(r, 200));
  const start = replies;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SAMPLE_MS));
  const rate = ((replies - start) * 1000) / (performance.now() - t0);
  running = false;
  for (const c of cs) c.close();
  return rate;
}

async function latencies(dial: Dial): Promise<number[]> {
  const c = await dial();
  const out: number[] = [];
  let t0 = 0;
  let id = 0;
  await new Promise<void>((resolve) => {
    c.onReply(() => {
      out.push(performance.now() - t0);
      if (out.length >= LATENCY_CALLS) return resolve();
      t0 = performance.now();
      c.send(++id);
    });
    t0 = performance.now();
    c.send(++id);
  });
  c.close();
  return out.slice(200); // warm-up
}

export async function run(): Promise<BenchResult[]> {
  const server = await RpcServer.start({
    host: '127.0.0.1',
    port: 0,
    methods: [ping2],
    logger: pino({ level: 'info' }, pino.destination('/dev/null')),
    apiVersion: 'bench',
    serverName: 'bench',
  });
  const port = server.address().port;
  const viaStomp: Dial = () => stompConn(port);
  const viaWs: Dial = () => wsConn(server.url());
  const results: BenchResult[] = [];
  try {
    for (const conns of [1, 8]) {
      const stomp: number[] = [];
      const ws: number[] = [];
      for (let i = 0; i < SAMPLES; i++) {
        // Alternate which goes first.
        const order = i % 2 === 0 ? ([viaStomp, viaWs] as const) : ([viaWs, viaStomp] as const);
        for (const dial of order) (dial === viaStomp ? stomp : ws).push(await throughput(dial, conns));
      }
      const o = summarizeHigherIsBetter(stomp, 'req/s');
      const b = summarizeHigherIsBetter(ws, 'req/s');
      const ratio = o.median / b.median;
      results.push({
        name: `stomp Host.ping2 x${conns} conn`,
        what: `Host.ping2 replies per second over STOMP, ${conns} connection(s), ${WINDOW} in flight each (higher is better)`,
        runs: SAMPLES,
        ours: o,
        baseline: { ...b, name: 'same server over WebSocket' },
        ratio,
        note: 'a figure (issue 11), no target',
      });
    }
    const ls: number[] = [];
    const lw: number[] = [];
    for (let i = 0; i < 2; i++) {
      ls.push(...(await latencies(viaStomp)));
      lw.push(...(await latencies(viaWs)));
    }
    const o = summarize(ls, 'ms');
    const b = summarize(lw, 'ms');
    results.push({
      name: 'stomp Host.ping2 latency',
      what: 'Host.ping2 round trip over STOMP, one in flight (lower is better)',
      runs: ls.length,
      ours: { ...o, median: round(o.median), p90: round(o.p90), p99: round(o.p99) },
      baseline: {
        ...b,
        median: round(b.median),
        p90: round(b.p90),
        p99: round(b.p99),
        name: 'same server over WebSocket',
      },
      ratio: o.median / b.median,
      note: 'a figure (issue 11), no target',
    });
  } finally {
    await server.close({ drainMs: 100 });
  }
  return results;
}
