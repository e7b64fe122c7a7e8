// A small JSON-RPC 2.0 client over one WebSocket: calls with ids, and a
// callback for the daemon's notifications. Connection problems become
// ConnectError (exit 3) with one line that says what to check.

import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { ConnectError, RpcCallError, UsageError } from './errors.js';

export interface ClientOptions {
  url: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  connectTimeoutMs?: number;
}

export interface Notification {
  method: string;
  params: unknown;
}

interface Pending {
  method: string;
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer?: NodeJS.Timeout;
}

function readPem(flag: string, path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(
      `${flag}: cannot read "${path}" (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
    );
  }
}

function describeConnectError(url: string, err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  const base = `cannot connect to ${url}`;
  switch (code) {
    case 'ECONNREFUSED':
      return `${base}: connection refused (is vmhostd running? systemctl status vmhostd)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${base}: unknown host`;
    case 'ETIMEDOUT':
      return `${base}: timed out`;
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return `${base}: the daemon's certificate is not trusted (${code}; pass its CA with --tls-ca)`;
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `${base}: the daemon's certificate does not name this host (${err.message.split('\n')[0]})`;
    default: {
      const msg = err.message.split('\n')[0] ?? String(err);
      if (/alert certificate required/.test(msg)) {
        return `${base}: the daemon requires a client certificate (pass --tls-cert and --tls-key signed by its CA)`;
      }
      const alert = /(?:tlsv1\d?|sslv3) alert [a-z ]+/.exec(msg)?.[0];
      if (alert) return `${base}: TLS refused by the daemon (${alert}); check --tls-cert/--tls-key/--tls-ca`;
      if (/certificate|handshake|alert/i.test(msg)) {
        return `${base}: TLS failed: ${msg} (mutual TLS needs --tls-cert/--tls-key signed by the daemon's CA)`;
      }
      return `${base}: ${msg}`;
    }
  }
}

export class RpcClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(n: Notification) => void>();
  private closed = false;
  /** Resolves when the socket closes, for whatever reason. */
  readonly closedPromise: Promise<void>;

  private constructor(
    private readonly ws: WebSocket,
    private readonly url: string,
  ) {
    this.closedPromise = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closed = true;
        const why = reason.length > 0 ? `${code} ${reason.toString()}` : `${code}`;
        for (const [id, p] of this.pending) {
          if (p.timer) clearTimeout(p.timer);
          p.reject(
            new ConnectError(
              `lost the connection to ${url} (close ${why}) while waiting for ${p.method}; the daemon may still complete it (check with: vmhost-client vm show VM)`,
            ),
          );
          this.pending.delete(id);
        }
        resolve();
      });
    });
    ws.on('message', (data) => this.onMessage(data.toString()));
    ws.on('error', () => {
      // 'close' follows and reports; an unhandled 'error' would crash the CLI
    });
  }

  static connect(opts: ClientOptions): Promise<RpcClient> {
    const cert = readPem('--tls-cert', opts.tlsCert);
    const key = readPem('--tls-key', opts.tlsKey);
    const ca = readPem('--tls-ca', opts.tlsCa);
    return new Promise((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(opts.url, {
          handshakeTimeout: opts.connectTimeoutMs ?? 5000,
          maxPayload: 64 * 1024 * 1024,
          ...(cert ? { cert } : {}),
          ...(key ? { key } : {}),
          ...(ca ? { ca } : {}),
        });
      } catch (e) {
        reject(new ConnectError(describeConnectError(opts.url, e as Error)));
        return;
      }
      const onError = (err: Error): void => {
        ws.removeAllListeners();
        ws.on('error', () => {});
        ws.terminate();
        reject(new ConnectError(describeConnectError(opts.url, err)));
      };
      ws.once('error', onError);
      ws.once('unexpected-response', (_req, res) => {
        onError(
          new Error(`HTTP ${res.statusCode} ${res.statusMessage ?? ''} (is the path /jsonrpc?)`.trim()),
        );
      });
      ws.once('open', () => {
        ws.off('error', onError);
        resolve(new RpcClient(ws, opts.url));
      });
    });
  }

  onNotification(cb: (n: Notification) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Calls `method`; rejects with RpcCallError on a JSON-RPC error. timeoutMs 0 = no client-side limit. */
  call(method: string, params: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<unknown> {
    if (this.closed) return Promise.reject(new ConnectError(`not connected to ${this.url}`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const p: Pending = { method, resolve, reject };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new ConnectError(`no answer from ${this.url} to ${method} within ${timeoutMs / 1000} s`));
        }, timeoutMs);
      }
      this.pending.set(id, p);
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  close(): Promise<void> {
    if (!this.closed) this.ws.close(1000);
    return this.closedPromise;
  }

  private onMessage(text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    for (const m of Array.isArray(msg) ? msg : [msg]) this.dispatch(m);
  }

  private dispatch(m: unknown): void {
    if (!m || typeof m !== 'object') return;
    const o = m as Record<string, unknown>;
    if (typeof o.method === 'string' && o.id === undefined) {
      for (const cb of this.listeners) cb({ method: o.method, params: o.params });
      return;
    }
    if (typeof o.id !== 'number') return;
    const p = this.pending.get(o.id);
    if (!p) return;
    this.pending.delete(o.id);
    if (p.timer) clearTimeout(p.timer);
    const err = o.error;
    if (err && typeof err === 'object') {
      const e = err as Record<string, unknown>;
      p.reject(
        new RpcCallError(
          p.method,
          typeof e.code === 'number' ? e.code : 0,
          typeof e.message === 'string' ? e.message : 'error',
          e.data,
        ),
      );
    } else {
      p.resolve(o.result);
    }
  }
}
