// Load generation for the JSON-RPC benches: open N WebSocket connections and
// measure replies per second (a window of requests in flight per connection)
// or per-request latency (one in flight per connection, closed loop). The
// client never parses replies (each reply on a connection answers the oldest
// request), so it costs the same against any server and stays cheap.
// Also starts the echo-server ceiling as a child process.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';

export function openSockets(url: string, n: number): Promise<WebSocket[]> {
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(url, { perMessageDeflate: false });
          ws.once('open', () => resolve(ws));
          ws.once('error', reject);
        }),
    ),
  );
}

export function closeSockets(sockets: readonly WebSocket[]): void {
  for (const ws of sockets) ws.terminate();
}

/** Request text for a method with named params; ids increase so the server sees distinct requests. */
export function requestMaker(method: string, params?: unknown): () => string {
  let id = 0;
  const tail = params === undefined ? '}' : `,"params":${JSON.stringify(params)}}`;
  return () => `{"jsonrpc":"2.0","id":${++id},"method":"${method}"${tail}`;
}

/** Replies per second over `ms`, each connection keeping `window` requests in flight, after a short warm-up. */
export async function throughput(
  sockets: readonly WebSocket[],
  next: () => string,
  ms: number,
  window: number,
): Promise<number> {
  let replies = 0;
  let running = true;
  const listeners = sockets.map((ws) => {
    const l = () => {
      replies++;
      if (running) ws.send(next());
    };
    ws.on('message', l);
    return l;
  });
  for (const ws of sockets) for (let i = 0; i < window; i++) ws.send(next());
  await new Promise((r) => setTimeout(r, Math.min(300, ms / 4)));
  const start = replies;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const rate = ((replies - start) * 1000) / (performance.now() - t0);
  running = false;
  await drain(sockets, () => replies, window);
  sockets.forEach((ws, i) => {
    ws.off('message', listeners[i]!);
  });
  return rate;
}

/** Waits until the requests still in flight have been answered, so the next measurement starts clean. */
async function drain(sockets: readonly WebSocket[], count: () => number, window: number): Promise<void> {
  // Each connection has exactly `window` requests outstanding when sending stops.
  const target = count() + sockets.length * window;
  const deadline = performance.now() + 10_000;
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (count() >= target) {
        for (const ws of sockets) ws.off('message', check);
        resolve();
      } else if (performance.now() > deadline) {
        reject(new Error('replies still missing 10 s after the load stopped'));
      }
    };
    for (const ws of sockets) ws.on('message', check);
    check();
  });
}

/** Per-request round-trip times (ms) over `ms`, one request in flight per connection. */
export async function latencies(
  sockets: readonly WebSocket[],
  next: () => string,
  ms: number,
): Promise<number[]> {
  const out: number[] = [];
  let running = true;
  let measuring = false;
  let outstanding = 0;
  let allIdle: (() => void) | undefined;
  const listeners = sockets.map((ws) => {
    let sentAt = 0;
    const send = () => {
      sentAt = performance.now();
      outstanding++;
      ws.send(next());
    };
    const l = () => {
      outstanding--;
      if (measuring) out.push(performance.now() - sentAt);
      if (running) send();
      else if (outstanding === 0) allIdle?.();
    };
    ws.on('message', l);
    return { l, send };
  });
  for (const x of listeners) x.send();
  await new Promise((r) => setTimeout(r, Math.min(300, ms / 4)));
  measuring = true;
  await new Promise((r) => setTimeout(r, ms));
  measuring = false;
  running = false;
  if (outstanding > 0) await new Promise<void>((r) => (allIdle = r));
  sockets.forEach((ws, i) => {
    ws.off('message', listeners[i]!.l);
  });
  return out;
}

export interface EchoServer {
  url: string;
  pid: number;
  close(): Promise<void>;
}

const echoEntry = fileURLToPath(new URL('./echo-server.ts', import.meta.url));

/** Starts bench/echo-server.ts answering each method with the given raw result JSON. */
export function startEchoServer(results: Record<string, string>): Promise<EchoServer> {
  return spawnListeningChild(echoEntry, results, 'echo server');
}

/**
 * Runs a bench server (`node --import tsx ENTRY SPEC.json`) as a child
 * process, like the daemon; it prints one line {"url"} once listening.
 */
export async function spawnListeningChild(entry: string, spec: unknown, what: string): Promise<EchoServer> {
  const dir = mkdtempSync(join(tmpdir(), 'vmhostd-bench-child-'));
  const file = join(dir, 'spec.json');
  writeFileSync(file, JSON.stringify(spec));
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', entry, file], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`${what} did not start within 30 s`)), 30_000);
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        resolve((JSON.parse(buf.slice(0, nl)) as { url: string }).url);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${what} exited (${code}) before listening`));
    });
  });
  return {
    url,
    pid: child.pid ?? -1,
    async close() {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A JSON-RPC caller that costs the bench process little, so the client's own
 * work stays out of what a bench attributes to the daemon: notifications
 * (which the daemon sends to every connection) are recognised by their
 * prefix and dropped unparsed; only replies are parsed and matched by id.
 */
export class LightRpc {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      // {"jsonrpc":"2.0","method":... is a notification: 26 bytes decide it.
      if (data.toString('latin1', 0, 26) === '{"jsonrpc":"2.0","method":') return;
      const msg = JSON.parse(data.toString()) as {
        id: number;
        result?: unknown;
        error?: { code: number; message: string };
      };
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${msg.error.code}: ${msg.error.message}`));
      else p.resolve(msg.result);
    });
    ws.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
    });
  }

  static async connect(url: string): Promise<LightRpc> {
    const [ws] = await openSockets(url, 1);
    return new LightRpc(ws!);
  }

  call<T = unknown>(method: string, params?: unknown): Promise<T> {
    const id = this.nextId++;
    const text = JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.ws.send(text);
    });
  }

  close(): void {
    this.ws.terminate();
  }
}
