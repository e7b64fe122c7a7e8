// The tests' JSON-RPC 2.0 client: json-rpc-2.0's JSONRPCClient over one ws
// WebSocket, plus collected notifications and waits with deadlines (never
// sleeps). Every result, notification and error it receives is held to the
// published contract (contract-check.ts), so API-level tests cannot pass
// on an answer that OpenRPC does not describe.
import { JSONRPCClient, JSONRPCErrorException, type JSONRPCResponse } from 'json-rpc-2.0';
import WebSocket, { type ClientOptions } from 'ws';
import type { VmStats } from '../../src/api/schemas.js';
import { checkError, checkNotification, checkResult } from './contract-check.js';

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

/** json-rpc-2.0 answers requests it gave up on (connection closed) with this code; the daemon never does. */
const LOCAL_FAILURE = 0;

export class TestRpcClient {
  readonly notifications: Notification[] = [];
  private readonly client: JSONRPCClient;
  private waiters = new Set<() => void>();
  private rawWaiters = new Set<(msg: unknown) => void>();

  private constructor(readonly ws: WebSocket) {
    this.client = new JSONRPCClient((request) => {
      if (ws.readyState !== WebSocket.OPEN) throw new Error('connection closed');
      ws.send(JSON.stringify(request));
    });
    ws.on('message', (data) => this.onMessage(data.toString()));
    ws.on('close', () => {
      this.client.rejectAllPendingRequests('connection closed');
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
        checkNotification(m.method, m.params);
        this.notifications.push({ method: m.method, params: m.params, at: Date.now() });
        for (const w of this.waiters) w();
        continue;
      }
      this.client.receive(m as unknown as JSONRPCResponse);
    }
  }

  async call<T = unknown>(method: string, params?: unknown): Promise<T> {
    let result: unknown;
    try {
      result = await this.client.request(method, params as Record<string, unknown> | undefined);
    } catch (err) {
      if (err instanceof JSONRPCErrorException && err.code !== LOCAL_FAILURE) {
        const error: RpcErrorObject = { code: err.code, message: err.message, data: err.data };
        checkError(error);
        throw new RpcCallError(error);
      }
      throw err instanceof JSONRPCErrorException ? new Error(err.message) : err;
    }
    checkResult(method, result);
    return result as T;
  }

  /** VM.getStats answers [VmStats] (VDSM's shape): the one record. */
  async stats(vmId: string): Promise<VmStats> {
    const [s] = await this.call<VmStats[]>('VM.getStats', { vmID: vmId });
    if (s === undefined) throw new Error(`VM.getStats of ${vmId} answered an empty list`);
    return s;
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

/** The VmStats in a `|virt|VM_status|<vmId>` notification ({"<vmId>": stats, notify_time}, as VDSM). */
export function vmStatusStats(n: Notification, vmId: string): VmStats {
  const s = (n.params as Record<string, VmStats | undefined>)[vmId];
  if (s === undefined) throw new Error(`${n.method} carries no stats for ${vmId}`);
  return s;
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
