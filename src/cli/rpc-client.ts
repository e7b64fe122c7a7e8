// The CLI's JSON-RPC 2.0 client: json-rpc-2.0's JSONRPCClient (ids,
// correlation, timeouts) over one ws WebSocket, and a callback for the
// daemon's notifications. Connection problems become ConnectError (exit 3)
// with one line that says what to check.

import { readFileSync } from 'node:fs';
import { JSONRPCClient, JSONRPCErrorException, type JSONRPCResponse } from 'json-rpc-2.0';
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

/** json-rpc-2.0 answers requests it gave up on itself with code 0; the daemon never uses it. */
const LOCAL_FAILURE = 0;

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
      return `${base}: unknown CA: the daemon's certificate is not trusted (not signed by a CA this client knows, ${code}; pass its CA with --tls-ca)`;
    case 'CERT_HAS_EXPIRED':
      return `${base}: expired: the daemon's certificate has expired (${code})`;
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `${base}: hostname mismatch: the daemon's certificate does not name this host (${err.message.split('\n')[0]})`;
    case 'CLIENT_CERT_REFUSED':
      return /no client certificate/.test(err.message)
        ? `${base}: the daemon requires a client certificate: no client certificate was sent (pass --tls-cert and --tls-key signed by its CA)`
        : `${base}: ${err.message} (pass --tls-cert/--tls-key signed by the daemon's CA)`;
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
  private readonly client: JSONRPCClient;
  private readonly listeners = new Set<(n: Notification) => void>();
  private closed = false;
  /** Why the connection closed, for the calls it cut short. */
  private closeReason = '';
  /** Resolves when the socket closes, for whatever reason. */
  readonly closedPromise: Promise<void>;

  private constructor(
    private readonly ws: WebSocket,
    private readonly url: string,
  ) {
    this.client = new JSONRPCClient((request) => {
      ws.send(JSON.stringify(request));
    });
    this.closedPromise = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closed = true;
        this.closeReason = reason.length > 0 ? `${code} ${reason.toString()}` : `${code}`;
        this.client.rejectAllPendingRequests(`close ${this.closeReason}`);
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
        // The daemon says why in the body (a refused client certificate, a
        // refused Origin/Host); read a little of it.
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < 500) body += chunk;
        });
        const done = () => {
          const text = body.trim().split('\n')[0] ?? '';
          const cert = /^client certificate refused: (.*)$/.exec(text);
          if (res.statusCode === 403 && cert) {
            const err = new Error(`the daemon refused the client certificate: ${cert[1]}`);
            (err as NodeJS.ErrnoException).code = 'CLIENT_CERT_REFUSED';
            onError(err);
            return;
          }
          const why = text !== '' ? `: ${text.slice(0, 200)}` : ' (is the path /jsonrpc?)';
          onError(new Error(`HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim() + why));
        };
        res.once('end', done);
        res.once('error', done);
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
  async call(method: string, params: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<unknown> {
    if (this.closed) throw new ConnectError(`not connected to ${this.url}`);
    const requester =
      timeoutMs > 0
        ? this.client.timeout(timeoutMs, (id) => ({
            jsonrpc: '2.0',
            id,
            error: {
              code: LOCAL_FAILURE,
              message: `no answer from ${this.url} to ${method} within ${timeoutMs / 1000} s`,
            },
          }))
        : this.client;
    try {
      return await requester.request(method, params);
    } catch (e) {
      if (!(e instanceof JSONRPCErrorException)) throw e;
      if (e.code !== LOCAL_FAILURE) throw new RpcCallError(method, e.code, e.message, e.data);
      if (this.closed) {
        throw new ConnectError(
          `lost the connection to ${this.url} (${e.message}) while waiting for ${method}; the daemon may still complete it (check with: vmhost-client vm show VM)`,
        );
      }
      throw new ConnectError(e.message);
    }
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
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (!m || typeof m !== 'object') continue;
      const o = m as Record<string, unknown>;
      if (typeof o.method === 'string' && o.id === undefined) {
        for (const cb of this.listeners) cb({ method: o.method, params: o.params });
      } else if ('id' in o && ('result' in o || 'error' in o)) {
        this.client.receive(o as unknown as JSONRPCResponse);
      }
    }
  }
}
