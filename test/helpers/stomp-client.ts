// STOMP clients for tests: @stomp/stompjs (a client this project did not
// write) over a TCP or TLS socket, with JSON-RPC calls correlated by id the
// way ovirt-engine's client does it (SEND to jms.topic.vdsm_requests with
// reply-to, reply as MESSAGE on the subscription there); and a raw socket for
// protocol-level checks that reads the server's bytes as text.
import { EventEmitter } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { Client, type IFrame, type IMessage } from '@stomp/stompjs';
import { TCPWrapper } from '@stomp/tcp-wrapper';

export const REQUESTS = 'jms.topic.vdsm_requests';
export const RESPONSES = 'jms.topic.vdsm_responses';
export const EVENTS = 'jms.queue.events';

class TlsWrapper extends TCPWrapper {
  // getSocket runs inside TCPWrapper's constructor, before subclass fields exist: keep options on a static slot.
  static next: ConnectionOptions = {};
  protected override getSocket(port: number, host: string): Socket {
    // Writes before the handshake completes are queued by the TLS socket.
    return tlsConnect({ ...TlsWrapper.next, port, host });
  }
}

export interface RpcReply {
  id: string | number | null;
  result?: unknown;
  error?: { code: number; message: string; data?: Record<string, unknown> };
}

export interface StompEvent {
  method: string;
  params: unknown;
  seq: number;
  bootId: string;
  headers: Record<string, string>;
}

export class EngineStompClient {
  readonly events: StompEvent[] = [];
  readonly connected: IFrame;
  private readonly emitter = new EventEmitter();
  private readonly pending = new Map<string | number, (r: RpcReply) => void>();
  private nextId = 1;
  private closedFlag = false;

  private constructor(
    readonly client: Client,
    connected: IFrame,
  ) {
    this.connected = connected;
    client.onWebSocketClose = () => {
      this.closedFlag = true;
      this.emitter.emit('closed');
    };
  }

  static connect(
    port: number,
    opts: {
      tls?: ConnectionOptions;
      heartbeat?: { incoming: number; outgoing: number };
      subscribeEvents?: boolean | Record<string, string>;
      replyTo?: string;
    } = {},
  ): Promise<EngineStompClient> {
    return new Promise((resolve, reject) => {
      const client = new Client({
        webSocketFactory: () => {
          if (!opts.tls) return new TCPWrapper('127.0.0.1', port);
          TlsWrapper.next = opts.tls;
          return new TlsWrapper('127.0.0.1', port);
        },
        heartbeatIncoming: opts.heartbeat?.incoming ?? 0,
        heartbeatOutgoing: opts.heartbeat?.outgoing ?? 0,
        reconnectDelay: 0,
        connectHeaders: { host: 'vmhostd' },
      });
      let settled = false;
      client.onConnect = (frame) => {
        settled = true;
        const c = new EngineStompClient(client, frame);
        c.subscribeReplies(opts.replyTo ?? RESPONSES);
        if (opts.subscribeEvents) {
          c.subscribeEvents(typeof opts.subscribeEvents === 'object' ? opts.subscribeEvents : {});
        }
        resolve(c);
      };
      client.onStompError = (frame) => {
        if (!settled) reject(new Error(`STOMP ERROR: ${frame.headers.message}`));
      };
      client.onWebSocketClose = () => {
        if (!settled) reject(new Error('connection closed before CONNECTED'));
      };
      client.onWebSocketError = (e: unknown) => {
        if (!settled) reject(new Error(`socket error: ${String((e as { message?: unknown }).message ?? e)}`));
      };
      client.activate();
    });
  }

  subscribeReplies(destination: string): void {
    this.client.subscribe(destination, (m: IMessage) => {
      const msg = JSON.parse(m.body) as RpcReply | RpcReply[];
      for (const r of Array.isArray(msg) ? msg : [msg]) {
        if (r.id === null || r.id === undefined) continue;
        const w = this.pending.get(r.id);
        if (w) {
          this.pending.delete(r.id);
          w(r);
        }
      }
      this.emitter.emit('reply', msg);
    });
  }

  subscribeEvents(headers: Record<string, string> = {}): void {
    this.client.subscribe(
      EVENTS,
      (m: IMessage) => {
        const n = JSON.parse(m.body) as { method: string; params: unknown; seq: number; bootId: string };
        this.events.push({
          method: n.method,
          params: n.params,
          seq: n.seq,
          bootId: n.bootId,
          headers: m.headers,
        });
        this.emitter.emit('event');
      },
      headers,
    );
  }

  call(
    method: string,
    params?: unknown,
    opts: { flowId?: string; replyTo?: string; timeoutMs?: number } = {},
  ): Promise<RpcReply> {
    const id = `req-${this.nextId++}`;
    const p = new Promise<RpcReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply for ${id} (${method})`));
      }, opts.timeoutMs ?? 10_000);
      this.pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
    const headers: Record<string, string> = {
      'reply-to': opts.replyTo ?? RESPONSES,
      'content-type': 'application/json',
    };
    if (opts.flowId) headers.ovirtCorrelationId = opts.flowId;
    this.client.publish({
      destination: REQUESTS,
      headers,
      body: JSON.stringify(
        params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params },
      ),
    });
    return p;
  }

  waitEvents(n: number, timeoutMs = 10_000): Promise<StompEvent[]> {
    if (this.events.length >= n) return Promise.resolve(this.events);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.emitter.off('event', on);
        reject(new Error(`only ${this.events.length} of ${n} events`));
      }, timeoutMs);
      const on = () => {
        if (this.events.length < n) return;
        clearTimeout(timer);
        this.emitter.off('event', on);
        resolve(this.events);
      };
      this.emitter.on('event', on);
    });
  }

  closed(): Promise<void> {
    if (this.closedFlag) return Promise.resolve();
    return new Promise((r) => this.emitter.once('closed', () => r()));
  }

  async close(): Promise<void> {
    await this.client.deactivate();
  }
}

/** A bare socket: write frames as strings, read everything the server says as text. */
export class RawStomp {
  text = '';
  ended = false;
  private readonly emitter = new EventEmitter();

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.text += d.toString('latin1');
      this.emitter.emit('data');
    });
    socket.on('close', () => {
      this.ended = true;
      this.emitter.emit('data');
    });
    socket.on('error', () => {});
  }

  static connect(port: number, tls?: ConnectionOptions): Promise<RawStomp> {
    return new Promise((resolve, reject) => {
      const s = tls ? tlsConnect({ ...tls, port, host: '127.0.0.1' }) : netConnect(port, '127.0.0.1');
      s.once(tls ? 'secureConnect' : 'connect', () => resolve(new RawStomp(s)));
      s.once('error', reject);
    });
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Resolves once the text read so far matches (or the connection ended: then rejects unless it matches). */
  waitFor(re: RegExp, timeoutMs = 5000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.text.match(re);
        if (m) {
          done();
          resolve(m);
        } else if (this.ended) {
          done();
          reject(new Error(`connection ended without ${re}; got ${JSON.stringify(this.text.slice(0, 500))}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${re}; got ${JSON.stringify(this.text.slice(0, 500))}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.emitter.off('data', check);
      };
      this.emitter.on('data', check);
      check();
    });
  }

  whenClosed(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ended) return resolve();
      const timer = setTimeout(() => reject(new Error('still open')), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export const CONNECT = (headers = 'accept-version:1.2\nhost:vmhostd\n') => `CONNECT\n${headers}\n\0`;
