// One STOMP 1.2 client connection, as VDSM serves them (lib/yajsonrpc
// stompserver.py): CONNECT/STOMP -> CONNECTED with heart-beat negotiation,
// SUBSCRIBE/UNSUBSCRIBE, SEND of JSON-RPC to the request destination with the
// reply going as MESSAGE to this connection's subscription on `reply-to`,
// events as MESSAGE to subscribers of the events destination, RECEIPT,
// DISCONNECT; ERROR then close on anything malformed or not allowed.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { JSONRPCResponse } from 'json-rpc-2.0';
import type { Logger } from 'pino';
import type { Caller, Dispatcher } from './dispatcher.js';
import { type JournalEntry, parseResumePoint, type ResumePoint } from './event-journal.js';
import { stringifyReply } from './raw-json.js';
import {
  encodeFrame,
  encodeFrameFrom,
  encodeHeaderLines,
  FrameError,
  FrameParser,
  HEARTBEAT,
  type StompFrame,
} from './stomp-frame.js';

/** VDSM's destinations (vdsm config `addresses`; ovirt-engine VdsRequestQueueName etc.). */
export const REQUEST_DESTINATION = 'jms.topic.vdsm_requests';
export const DEFAULT_REPLY_DESTINATION = 'jms.topic.vdsm_responses';
export const EVENTS_DESTINATION = 'jms.queue.events';

/** VDSM raises any non-zero heart-beat below this (stompserver.py _cmd_connect). */
export const MIN_HEARTBEAT_MS = 1000;

export interface StompLimits {
  maxFrameBytes: number;
  maxHeaders: number;
  maxHeaderLineBytes: number;
  maxSubscriptions: number;
  maxInFlight: number;
  /** CONNECT must arrive this soon after the connection is accepted. */
  connectTimeoutMs: number;
  maxBufferedBytes: number;
}

export interface SessionHost {
  dispatcher: Dispatcher;
  log: Logger;
  serverName: string;
  /** Kept events to send a new events subscriber first (resume point or unheard outcomes). */
  replayFor(resume: ResumePoint | undefined): JournalEntry[];
  onClose(session: StompSession): void;
  /** CONNECT did not come in time. */
  onConnectTimeout?(): void;
}

interface Subscription {
  id: string;
  destination: string;
  /** Its MESSAGE header lines that never change (destination, subscription, content-type), escaped. */
  headerLines: string;
}

type State = 'awaiting-connect' | 'connected' | 'closed';

function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as { then?: unknown }).then === 'function';
}

export class StompSession {
  readonly caller: Caller;
  private state: State = 'awaiting-connect';
  private readonly parser: FrameParser;
  private readonly subs = new Map<string, Subscription>();
  private eventSubs = 0;
  private readonly log: Logger;
  private connectTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private lastIn = Date.now();
  private lastOut = Date.now();
  private corked = false;
  private messageSeq = 0;
  private inputEnded = false;

  constructor(
    readonly connectionId: string,
    private readonly socket: Socket,
    private readonly host: SessionHost,
    private readonly limits: StompLimits,
  ) {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.log = host.log.child({ conn: connectionId, transport: 'stomp' });
    this.caller = {
      connectionId,
      remote,
      log: this.log,
      inFlight: 0,
      maxInFlight: limits.maxInFlight,
      gone: false,
    };
    this.parser = new FrameParser({
      maxFrameBytes: limits.maxFrameBytes,
      maxHeaders: limits.maxHeaders,
      maxHeaderLineBytes: limits.maxHeaderLineBytes,
    });
  }

  /** Starts reading; `head` holds the bytes the protocol sniffer already took. */
  start(head: Buffer): void {
    const s = this.socket;
    s.on('error', (err: NodeJS.ErrnoException) =>
      this.log.info({ code: err.code, err: err.message }, 'stomp socket error'),
    );
    s.on('close', () => this.onSocketClose());
    // The listener allows half-open sockets (HTTP does): a client that stopped sending
    // is done once its requests are answered.
    s.on('end', () => {
      this.inputEnded = true;
      if (this.caller.inFlight === 0) this.close();
    });
    s.setNoDelay(true);
    this.connectTimer = setTimeout(() => {
      this.log.info({ timeoutMs: this.limits.connectTimeoutMs }, 'stomp: no CONNECT in time; closing');
      this.host.onConnectTimeout?.();
      this.fail('CONNECT not received in time');
    }, this.limits.connectTimeoutMs);
    this.connectTimer.unref();
    if (head.length > 0) this.onData(head);
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.resume();
  }

  get subscribedToEvents(): boolean {
    return this.state === 'connected' && this.eventSubs > 0;
  }

  /** A notification, to each of this client's subscriptions on the events destination. */
  deliverEvent(entry: JournalEntry): void {
    if (!this.subscribedToEvents) return;
    for (const sub of this.subs.values()) {
      if (sub.destination === EVENTS_DESTINATION) this.sendEvent(sub, entry);
    }
  }

  /** Server shutdown: tell the client why, then close. */
  shutdown(): void {
    if (this.state === 'closed') return;
    this.fail('server shutting down');
  }

  /** Cut without a word (drain deadline passed). */
  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastIn = Date.now();
    let frames: StompFrame[];
    try {
      ({ frames } = this.parser.push(chunk));
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      this.log.info({ err: err.message, command: err.command }, 'stomp: malformed frame; closing');
      this.fail(`malformed frame: ${err.message}`);
      return;
    }
    for (const f of frames) {
      if ((this.state as State) === 'closed') return;
      this.onFrame(f);
    }
  }

  private onFrame(f: StompFrame): void {
    if (this.state === 'awaiting-connect') {
      if (f.command !== 'CONNECT' && f.command !== 'STOMP') {
        this.log.info({ command: f.command }, 'stomp: frame before CONNECT; closing');
        this.fail(`expected CONNECT, got ${f.command}`, f);
        return;
      }
      this.onConnect(f);
      return;
    }
    switch (f.command) {
      case 'SEND':
        this.onSend(f);
        return;
      case 'SUBSCRIBE':
        this.onSubscribe(f);
        return;
      case 'UNSUBSCRIBE':
        this.onUnsubscribe(f);
        return;
      case 'DISCONNECT':
        this.onDisconnect(f);
        return;
      case 'ACK':
      case 'NACK':
        // Every subscription is ack:auto; acknowledgements change nothing.
        this.receipt(f);
        return;
      case 'CONNECT':
      case 'STOMP':
        this.fail('already connected', f);
        return;
      default:
        this.log.info({ command: f.command }, 'stomp: command not supported; closing');
        this.fail(`command not supported: ${f.command}`, f);
    }
  }

  private onConnect(f: StompFrame): void {
    const versions = (f.headers.get('accept-version') ?? '1.0').split(',').map((v) => v.trim());
    if (!versions.includes('1.2')) {
      this.fail('unsupported STOMP version: this server speaks 1.2', f, [['version', '1.2']]);
      return;
    }
    const hb = parseHeartBeat(f.headers.get('heart-beat'));
    if (hb === null) {
      this.fail('malformed heart-beat header: expected "cx,cy" in ms', f);
      return;
    }
    // VDSM: a non-zero interval is at least 1 s. The client sends every cx, wants every cy.
    const clientSends = hb.cx === 0 ? 0 : Math.max(hb.cx, MIN_HEARTBEAT_MS);
    const clientWants = hb.cy === 0 ? 0 : Math.max(hb.cy, MIN_HEARTBEAT_MS);
    clearTimeout(this.connectTimer);
    this.state = 'connected';
    this.write(
      encodeFrame('CONNECTED', [
        ['version', '1.2'],
        ['heart-beat', `${clientWants},${clientSends}`],
        ['server', this.host.serverName],
        ['session', this.connectionId],
      ]),
    );
    this.startHeartbeats(clientWants, clientSends);
    this.log.info(
      {
        remote: this.caller.remote,
        peer: peerName(this.socket),
        heartBeat: { sendMs: clientWants, expectMs: clientSends },
        host: f.headers.get('host')?.slice(0, 100),
      },
      'client connected',
    );
  }

  private startHeartbeats(sendEveryMs: number, expectEveryMs: number): void {
    if (sendEveryMs === 0 && expectEveryMs === 0) {
      // Nothing negotiated: TCP keepalive still finds a vanished peer.
      this.socket.setKeepAlive(true, 30_000);
      return;
    }
    // The spec asks for tolerance on the receiving side; allow half an interval.
    const deadline = expectEveryMs === 0 ? 0 : Math.floor(expectEveryMs * 1.5);
    const tick = Math.max(
      100,
      Math.min(sendEveryMs || Number.MAX_SAFE_INTEGER, deadline || Number.MAX_SAFE_INTEGER) / 2,
    );
    this.heartbeatTimer = setInterval(() => {
      const now = Date.now();
      if (deadline > 0 && now - this.lastIn > deadline) {
        this.log.warn(
          { expectMs: expectEveryMs, silentMs: now - this.lastIn },
          'stomp: client heart-beat missed; closing',
        );
        this.fail('heart-beat missed');
        return;
      }
      if (sendEveryMs > 0 && now - this.lastOut >= sendEveryMs - tick) this.write(HEARTBEAT);
    }, tick);
    this.heartbeatTimer.unref();
  }

  private onSubscribe(f: StompFrame): void {
    const id = f.headers.get('id');
    const destination = f.headers.get('destination');
    if (!id || !destination) {
      this.fail('SUBSCRIBE needs the id and destination headers', f);
      return;
    }
    if (this.subs.has(id)) {
      this.fail(`subscription id already in use: ${id.slice(0, 100)}`, f);
      return;
    }
    if (this.subs.size >= this.limits.maxSubscriptions) {
      this.log.warn({ max: this.limits.maxSubscriptions }, 'stomp: too many subscriptions; closing');
      this.fail(`too many subscriptions (at most ${this.limits.maxSubscriptions})`, f);
      return;
    }
    let resume: ResumePoint | undefined;
    if (destination === EVENTS_DESTINATION) {
      const r = parseResumePoint(f.headers.get('since'), f.headers.get('boot-id'));
      if (r === null) {
        this.fail('since must be a sequence number and boot-id a boot id (UUID)', f);
        return;
      }
      resume = r;
    }
    const sub: Subscription = {
      id,
      destination,
      headerLines: encodeHeaderLines([
        ['destination', destination],
        ['subscription', id],
        ['content-type', 'application/json'],
      ]),
    };
    this.subs.set(id, sub);
    this.log.info(
      { subscription: id.slice(0, 100), destination: destination.slice(0, 200) },
      'stomp subscribe',
    );
    this.receipt(f);
    if (destination === EVENTS_DESTINATION) {
      this.eventSubs++;
      // Replay before any live event can be delivered: one synchronous pass.
      for (const e of this.host.replayFor(resume)) this.sendEvent(sub, e);
    }
  }

  private onUnsubscribe(f: StompFrame): void {
    const id = f.headers.get('id');
    if (!id) {
      this.fail('UNSUBSCRIBE needs the id header', f);
      return;
    }
    const sub = this.subs.get(id);
    if (sub) {
      this.subs.delete(id);
      if (sub.destination === EVENTS_DESTINATION) this.eventSubs--;
    }
    this.receipt(f);
  }

  private onSend(f: StompFrame): void {
    const destination = f.headers.get('destination');
    if (!destination) {
      this.fail('SEND needs the destination header', f);
      return;
    }
    if (destination !== REQUEST_DESTINATION && !destination.startsWith(`${REQUEST_DESTINATION}.`)) {
      this.fail(
        `unknown destination: ${destination.slice(0, 200)} (requests go to ${REQUEST_DESTINATION})`,
        f,
      );
      return;
    }
    const replyTo = f.headers.get('reply-to') || DEFAULT_REPLY_DESTINATION;
    const flowId = f.headers.get('ovirtCorrelationId');
    const caller = flowId ? this.callerWithFlow(flowId.slice(0, 200)) : this.caller;
    this.receipt(f);
    const r = this.host.dispatcher.handleText(f.body.toString('utf8'), caller);
    if (isThenable(r)) {
      r.then(
        (res) => {
          if (res !== null) this.reply(replyTo, res);
          this.closeIfDone();
        },
        (err: unknown) => {
          this.log.error({ err }, 'dispatch failed');
          this.closeIfDone();
        },
      );
    } else if (r !== null) {
      this.reply(replyTo, r);
    }
  }

  private closeIfDone(): void {
    if (this.inputEnded && this.caller.inFlight === 0) this.close();
  }

  private onDisconnect(f: StompFrame): void {
    this.receipt(f);
    this.log.info('stomp: DISCONNECT');
    this.close();
  }

  /** The connection's caller with the engine's flow id on every log line of the request. */
  private callerWithFlow(flowId: string): Caller {
    const base = this.caller;
    const log = this.log.child({ flowId });
    return {
      get connectionId() {
        return base.connectionId;
      },
      get remote() {
        return base.remote;
      },
      log,
      get inFlight() {
        return base.inFlight;
      },
      set inFlight(v: number) {
        base.inFlight = v;
      },
      get maxInFlight() {
        return base.maxInFlight;
      },
      get gone() {
        return base.gone;
      },
    };
  }

  private reply(destination: string, res: JSONRPCResponse | JSONRPCResponse[]): void {
    if (this.state !== 'connected') {
      this.log.info(
        { ids: Array.isArray(res) ? res.map((r) => r.id) : res.id },
        'reply not delivered: client gone (request completed)',
      );
      return;
    }
    let text: string;
    try {
      text = stringifyReply(res);
    } catch (err) {
      this.log.error({ err }, 'result not serialisable as JSON');
      return;
    }
    let sent = 0;
    for (const sub of this.subs.values()) {
      if (sub.destination !== destination) continue;
      sent++;
      this.writeMessage(sub, text, []);
    }
    if (sent === 0) {
      this.log.warn(
        { destination: destination.slice(0, 200), ids: Array.isArray(res) ? res.map((r) => r.id) : res.id },
        'reply not delivered: no subscription on the reply destination',
      );
    }
  }

  private sendEvent(sub: Subscription, e: JournalEntry): void {
    this.writeMessage(sub, e.text, [
      ['seq', String(e.seq)],
      ['boot-id', e.bootId],
    ]);
  }

  private writeMessage(sub: Subscription, text: string, extra: [string, string][]): void {
    this.write(
      encodeFrameFrom(
        'MESSAGE',
        sub.headerLines,
        [['message-id', `${this.connectionId}-${++this.messageSeq}`], ...extra],
        text,
      ),
    );
  }

  private receipt(f: StompFrame): void {
    const r = f.headers.get('receipt');
    if (r !== undefined) this.write(encodeFrame('RECEIPT', [['receipt-id', r]]));
  }

  private write(buf: Buffer): void {
    const s = this.socket;
    if (this.state === 'closed' || !s.writable) return;
    if (s.writableLength > this.limits.maxBufferedBytes) {
      this.log.warn(
        { bufferedBytes: s.writableLength, max: this.limits.maxBufferedBytes },
        'client not reading: output buffer over the cap, dropping it',
      );
      this.state = 'closed';
      s.destroy();
      return;
    }
    // Frames ready in the same tick leave in one write, as on the WebSocket.
    if (!this.corked) {
      this.corked = true;
      s.cork();
      process.nextTick(() => {
        this.corked = false;
        s.uncork();
      });
    }
    s.write(buf);
    this.lastOut = Date.now();
  }

  /** ERROR (with receipt-id when the offending frame asked for a receipt), then close. */
  private fail(message: string, f?: StompFrame, extra: [string, string][] = []): void {
    if (this.state === 'closed') return;
    const headers: [string, string][] = [['message', message.slice(0, 300)], ...extra];
    const r = f?.headers.get('receipt');
    if (r !== undefined) headers.push(['receipt-id', r]);
    this.write(encodeFrame('ERROR', [...headers, ['content-type', 'text/plain']], `${message}\n`));
    this.close();
  }

  private close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.stopTimers();
    this.socket.end();
    // A peer that never reads must not keep the socket open.
    const t = setTimeout(() => this.socket.destroy(), 2000);
    t.unref();
    this.socket.once('close', () => clearTimeout(t));
  }

  private stopTimers(): void {
    clearTimeout(this.connectTimer);
    clearInterval(this.heartbeatTimer);
  }

  private onSocketClose(): void {
    this.state = 'closed';
    this.stopTimers();
    this.caller.gone = true;
    this.log.info({ inFlight: this.caller.inFlight }, 'client disconnected');
    this.host.onClose(this);
  }
}

/** "cx,cy" in ms; absent means 0,0. null if malformed. */
export function parseHeartBeat(v: string | undefined): { cx: number; cy: number } | null {
  if (v === undefined) return { cx: 0, cy: 0 };
  const m = /^\s*(\d{1,9})\s*,\s*(\d{1,9})\s*$/.exec(v);
  if (!m) return null;
  return { cx: Number(m[1]), cy: Number(m[2]) };
}

function peerName(socket: Socket): string | undefined {
  const t = socket as Partial<TLSSocket>;
  if (typeof t.getPeerCertificate !== 'function') return undefined;
  const cert = t.getPeerCertificate();
  return cert && typeof cert.subject === 'object' ? String(cert.subject.CN) : undefined;
}
