// A minimal JSON-RPC 2.0 WebSocket client for tests: calls with ids,
// collected notifications, and waits with deadlines (never sleeps).
import WebSocket, { type ClientOptions } from 'ws';

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: Record<string, unknown> & { reason?: string; field?: string; rule?: string };
}

export class RpcCallError extends Error {
  constructor(readonly error: RpcErrorObject) {
    super(`${error.code}: ${error.message}`);
  }
  get code(): number {
    return this.error.code;
  }
  get reason(): string | undefined {
    return this.error.data?.reason;
  }
}

export interface Notification {
  method: string;
  params: unknown;
  at: number;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

export class TestRpcClient {
  readonly notifications: Notification[] = [];
  private nextId = 1;
  private pending = new Map<number | string, Pending>();
  private waiters = new Set<() => void>();
  private rawWaiters = new Set<(msg: unknown) => void>();

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => this.onMessage(data.toString()));
    ws.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
      for (const w of this.waiters) w();
    });
  }

  static connect(url: string, opts: ClientOptions = {}): Promise<TestRpcClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, opts);
      ws.once('open', () => resolve(new TestRpcClient(ws)));
      ws.once('error', reject);
    });
  }

  private onMessage(text: string): void {
    const msg = JSON.parse(text) as unknown;
    for (const w of this.rawWaiters) w(msg);
    const items = Array.isArray(msg) ? msg : [msg];
    for (const m of items as Record<string, unknown>[]) {
      if (m.id === undefined && typeof m.method === 'string') {
        this.notifications.push({ method: m.method, params: m.params, at: Date.now() });
        for (const w of this.waiters) w();
        continue;
      }
      const p = this.pending.get(m.id as number);
      if (!p) continue;
      this.pending.delete(m.id as number);
      if (m.error) p.reject(new RpcCallError(m.error as RpcErrorObject));
      else p.resolve(m.result);
    }
  }

  call<T = unknown>(method: string, params?: unknown): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  /** Sends raw text and resolves with the next message the server sends. */
  raw(text: string | Buffer, timeoutMs = 5000): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.rawWaiters.delete(w);
        reject(new Error('no reply to raw message'));
      }, timeoutMs);
      const w = (msg: unknown) => {
        clearTimeout(t);
        this.rawWaiters.delete(w);
        resolve(msg);
      };
      this.rawWaiters.add(w);
      this.ws.send(text);
    });
  }

  /** Resolves with the first notification (already received or future) matching pred. */
  waitForNotification(pred: (n: Notification) => boolean, timeoutMs = 30_000): Promise<Notification> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.notifications.find(pred);
        if (found) {
          clearTimeout(t);
          this.waiters.delete(check);
          resolve(found);
        } else if (this.ws.readyState !== WebSocket.OPEN) {
          clearTimeout(t);
          this.waiters.delete(check);
          reject(new Error('connection closed while waiting for a notification'));
        }
      };
      const t = setTimeout(() => {
        this.waiters.delete(check);
        reject(
          new Error(
            `no matching notification within ${timeoutMs} ms; got: ${this.notifications.map((n) => n.method).join(', ')}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

/** Calls and expects a JSON-RPC error; returns it. */
export async function expectRpcError(p: Promise<unknown>): Promise<RpcCallError> {
  try {
    const v = await p;
    throw new Error(`expected an error, got ${JSON.stringify(v)}`);
  } catch (err) {
    if (err instanceof RpcCallError) return err;
    throw err;
  }
}
