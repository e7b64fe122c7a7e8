// The daemon's listener: one HTTP(S) server carrying the JSON-RPC WebSocket
// (/jsonrpc), the HTTP routes the API registers (e.g. REST at /api/...) and
// the web console (/). Enforces
// the transport limits (message size, connections, in-flight requests,
// pre-handshake sockets, keepalive, slow readers), the Origin/Host policy,
// and broadcasts notifications.
// Knows nothing of libvirt: methods come in as MethodSpecs.
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { JSONRPCResponse } from 'json-rpc-2.0';
import type { Logger } from 'pino';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { type Caller, DEFAULT_MAX_BATCH_ENTRIES, Dispatcher } from './dispatcher.js';
import { RpcErrorCode } from './errors.js';
import { EventJournal, type PublishOptions, parseResumePoint } from './event-journal.js';
import { DEFAULT_MAX_BODY_BYTES, type HttpRoute, type HttpRouteContext, routeMatches } from './http-route.js';
import {
  checkPlainListen,
  clientCertProblem,
  type LoadedTls,
  loadTls,
  type TlsOptions,
} from './listen-policy.js';
import type { MethodSpec } from './method.js';
import type { RpcObserver } from './observer.js';
import { buildOpenRpcDocument, type OpenRpcDocument } from './openrpc.js';
import { OriginPolicy } from './origin-policy.js';
import { sniffProtocols } from './protocol-sniffer.js';
import { stringifyReply } from './raw-json.js';
import { SocketGuard, TARPIT_FACTOR } from './socket-guard.js';
import { StaticFiles } from './static-files.js';
import { StompServer } from './stomp-server.js';

export type { TlsOptions } from './listen-policy.js';

export interface RpcLimits {
  /** Largest WebSocket message; bigger ones close the connection with 1009. Default 1 MiB. */
  maxPayloadBytes?: number;
  /** Concurrent WebSocket clients; the next upgrade gets HTTP 503. Default 256. */
  maxConnections?: number;
  /** Requests running per connection; more get error -32000. Default 64. */
  maxInFlightPerConnection?: number;
  /** Time to complete the TLS handshake and send the HTTP request head. Default 5 s. */
  handshakeTimeoutMs?: number;
  /** A socket that sends no byte within this is closed. Default 2 s. */
  firstByteTimeoutMs?: number;
  /** Sockets held before they are WebSocket clients; a newcomer evicts the oldest idle one. Default 256. */
  maxPendingConnections?: number;
  /** Of those, from one source address (an IPv6 /64). Default 16. */
  maxPendingPerAddress?: number;
  /** Entries per JSON-RPC batch; a bigger batch is refused whole. Default 64. */
  maxBatchEntries?: number;
  /** Keepalive ping period; a client that missed the previous pong is dropped. Default 30 s. */
  pingIntervalMs?: number;
  /** HTTP route request body cap. Default 64 KiB. */
  maxBodyBytes?: number;
  /** A client whose unsent output exceeds this is too slow and gets dropped. Default 8 MiB. */
  maxBufferedBytes?: number;
  /** STOMP: headers per frame (default 64) and subscriptions per connection (default 32). */
  maxStompHeaders?: number;
  maxStompSubscriptions?: number;
}

export interface RpcServerOptions {
  host: string;
  /** 0 = ephemeral; address() gives the real one. */
  port: number;
  methods: MethodSpec[];
  /** Plain HTTP fronts (e.g. REST), matched by path prefix before the console. */
  routes?: HttpRoute[];
  logger: Logger;
  /** cert/key/ca are PEM text or paths to PEM files. Client certificates are verified against ca. */
  tls?: TlsOptions;
  /** Without TLS, a non-loopback host is refused unless this is true (then a warning is logged). */
  allowInsecure?: boolean;
  limits?: RpcLimits;
  /** Browser origins, besides the console's own, allowed to call (scheme://host[:port]). */
  allowedOrigins?: readonly string[];
  /** Names a Host header may carry besides the listen address, loopback and this machine's names. */
  allowedHosts?: readonly string[];
  /** Web console directory: GET / serves its index.html, /static/* and /* its files. */
  staticDir?: string;
  apiVersion: string;
  serverName: string;
  /** Numbers, keeps and replays notifications; the daemon shares it with the API. Default: a new one. */
  events?: EventJournal;
  /** Told of every request's outcome and every refused connection (metrics). */
  observer?: RpcObserver;
}

export const RPC_PATH = '/jsonrpc';

const DEFAULT_LIMITS: Required<RpcLimits> = {
  maxPayloadBytes: 1024 * 1024,
  maxConnections: 256,
  maxInFlightPerConnection: 64,
  handshakeTimeoutMs: 5_000,
  firstByteTimeoutMs: 2_000,
  maxPendingConnections: 256,
  maxPendingPerAddress: 16,
  maxBatchEntries: DEFAULT_MAX_BATCH_ENTRIES,
  pingIntervalMs: 30_000,
  maxBodyBytes: DEFAULT_MAX_BODY_BYTES,
  maxBufferedBytes: 8 * 1024 * 1024,
  maxStompHeaders: 64,
  maxStompSubscriptions: 32,
};

/** Node's own hard socket cap sits this far above ours, which act first. */
const EXTRA_SOCKETS = 64;

interface Connection extends Caller {
  ws: WebSocket;
  /** The TCP/TLS socket under ws, corked while replies of one tick are queued. */
  socket: Socket;
  corked: boolean;
  alive: boolean;
}

function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as { then?: unknown }).then === 'function';
}

function rejectUpgrade(socket: Socket, status: number, text: string): void {
  socket.on('error', () => {});
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${text}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** The path part of a request target, or null for absolute-form/odd targets. */
function pathOf(url: string | undefined): string | null {
  if (url === undefined || !url.startsWith('/')) return null;
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

export class RpcServer {
  private readonly conns = new Set<Connection>();
  /** Every accepted TCP socket, including ones still in the TLS handshake (http does not track those). */
  private readonly sockets = new Set<Socket>();
  private readonly dispatcher: Dispatcher;
  private readonly wss: WebSocketServer;
  private readonly routeCtx: HttpRouteContext;
  private readonly statics: StaticFiles | undefined;
  private readonly limits: Required<RpcLimits>;
  private readonly guard: SocketGuard;
  private readonly origins: OriginPolicy;
  private readonly log: Logger;
  private pingTimer: NodeJS.Timeout | undefined;
  private seq = 0;
  private connectListeners = new Set<(connectionId: string) => void>();
  private closing = false;
  private closed: Promise<void> | undefined;
  private openrpc: OpenRpcDocument | undefined;
  private addr: { host: string; port: number } = { host: '', port: 0 };
  private readonly journal: EventJournal;
  private readonly stomp: StompServer;
  private readonly observer: RpcObserver;

  private constructor(
    private readonly opts: RpcServerOptions,
    private readonly http: Server,
    private readonly tls: LoadedTls | undefined,
  ) {
    this.log = opts.logger;
    this.limits = { ...DEFAULT_LIMITS, ...definedOnly(opts.limits ?? {}) };
    const discover: MethodSpec = {
      name: 'rpc.discover',
      summary: 'The OpenRPC document describing this API',
      params: { type: 'object', properties: {}, additionalProperties: false },
      result: { type: 'object', description: 'OpenRPC 1.2 document' },
      logLevel: 'debug',
      readOnly: true,
      handler: async () => this.discoverDocument(),
    };
    this.observer = opts.observer ?? {};
    // A batch that passes the cap must fit the in-flight budget of an idle connection.
    this.dispatcher = new Dispatcher([...opts.methods, discover], this.observer, {
      maxBatchEntries: Math.min(this.limits.maxBatchEntries, this.limits.maxInFlightPerConnection),
    });
    this.guard = new SocketGuard(
      {
        firstByteMs: this.limits.firstByteTimeoutMs,
        maxPending: this.limits.maxPendingConnections,
        perAddress: this.limits.maxPendingPerAddress,
      },
      this.log,
      (why) => this.observer.refused?.(why),
    );
    this.origins = new OriginPolicy({
      listenHost: opts.host,
      tls: tls !== undefined,
      allowedOrigins: opts.allowedOrigins ?? [],
      allowedHosts: opts.allowedHosts ?? [],
    });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.limits.maxPayloadBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.routeCtx = {
      dispatcher: this.dispatcher,
      log: this.log,
      maxBodyBytes: this.limits.maxBodyBytes,
      isClosing: () => this.closing,
    };
    this.statics = opts.staticDir === undefined ? undefined : new StaticFiles(opts.staticDir, this.log);
    this.journal = opts.events ?? new EventJournal({ log: this.log });
    this.stomp = new StompServer({
      dispatcher: this.dispatcher,
      journal: this.journal,
      log: this.log,
      serverName: opts.serverName,
      limits: {
        maxFrameBytes: this.limits.maxPayloadBytes,
        maxHeaders: this.limits.maxStompHeaders,
        maxHeaderLineBytes: 8 * 1024,
        maxSubscriptions: this.limits.maxStompSubscriptions,
        maxInFlight: this.limits.maxInFlightPerConnection,
        connectTimeoutMs: this.limits.handshakeTimeoutMs,
        maxBufferedBytes: this.limits.maxBufferedBytes,
      },
      connectionCount: () => this.connectionCount(),
      maxConnections: this.limits.maxConnections,
      isClosing: () => this.closing,
      nextConnectionId: () => `c${++this.seq}`,
      onRefused: (reason) => this.observer.refused?.(reason),
    });
    this.journal.addSink(this.stomp);
    this.journal.addSink({ listeners: () => this.conns.size, deliver: (e) => this.broadcast(e.text) });
    // STOMP or HTTP, told apart by the first bytes (after TLS).
    sniffProtocols(http, {
      event: tls ? 'secureConnection' : 'connection',
      timeoutMs: this.limits.handshakeTimeoutMs,
      onStomp: (socket, head) => {
        if (this.guard.requestStarted(socket)) {
          this.guard.upgraded(socket);
          this.stomp.accept(socket, head);
        }
      },
      log: this.log,
    });
  }

  static async start(opts: RpcServerOptions): Promise<RpcServer> {
    const limits = { ...DEFAULT_LIMITS, ...definedOnly(opts.limits ?? {}) };
    let tls: LoadedTls | undefined;
    let insecure = false;
    if (opts.tls) tls = loadTls(opts.tls);
    else insecure = checkPlainListen(opts.host, opts.allowInsecure === true);

    const httpOpts = {
      headersTimeout: limits.handshakeTimeoutMs,
      requestTimeout: Math.max(30_000, limits.handshakeTimeoutMs),
      // Node checks header/request timeouts on this period (default 30 s).
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.handshakeTimeoutMs / 2))),
    };
    const http = tls
      ? createHttpsServer({
          ...httpOpts,
          cert: tls.cert,
          key: tls.key,
          ca: tls.ca,
          minVersion: 'TLSv1.2',
          requestCert: tls.requireClientCert,
          // Verified by us after the handshake, to answer a reason (see clientCertProblem).
          rejectUnauthorized: false,
          handshakeTimeout: limits.handshakeTimeoutMs,
        })
      : createHttpServer(httpOpts);
    http.maxConnections =
      limits.maxConnections + limits.maxPendingConnections * (1 + TARPIT_FACTOR) + EXTRA_SOCKETS;
    http.keepAliveTimeout = 5_000;

    const server = new RpcServer(opts, http, tls);
    server.attach();
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(new Error(`cannot listen on ${opts.host}:${opts.port}: ${err.message}`));
      http.once('error', onError);
      http.listen(opts.port, opts.host, () => {
        http.off('error', onError);
        resolve();
      });
    });
    const a = http.address() as AddressInfo;
    server.addr = { host: opts.host, port: a.port };
    if (insecure) {
      opts.logger.warn(
        { host: opts.host, port: a.port },
        'listening WITHOUT TLS on a non-loopback address (allow_insecure): anyone on the network can drive this host',
      );
    }
    server.startKeepalive();
    opts.logger.info(
      {
        url: server.url(),
        tls: tls !== undefined,
        clientCertRequired: tls?.requireClientCert ?? false,
        limits,
      },
      'rpc server listening',
    );
    return server;
  }

  address(): { host: string; port: number } {
    return { ...this.addr };
  }

  url(): string {
    const host = this.addr.host.includes(':') ? `[${this.addr.host}]` : this.addr.host;
    return `${this.tls ? 'wss' : 'ws'}://${host}:${this.addr.port}${RPC_PATH}`;
  }

  /** Calls fn after each new WebSocket client is connected (e.g. to replay what it missed). */
  onClientConnected(fn: (connectionId: string) => void): () => void {
    this.connectListeners.add(fn);
    return () => this.connectListeners.delete(fn);
  }

  /** Open clients over WebSocket and STOMP. */
  connectionCount(): number {
    return this.conns.size + this.stomp.size;
  }

  /** Connected clients per transport. */
  clientCounts(): { ws: number; stomp: number } {
    return { ws: this.conns.size, stomp: this.stomp.size };
  }

  /** Number and keep a JSON-RPC notification, and send it to every open client (see EventJournal). */
  notify(method: string, params: unknown, opts?: PublishOptions): void {
    this.journal.notify(method, params, opts);
  }

  private broadcast(text: string): void {
    // Encoded once for all clients (ws would encode the string on every send).
    const data = this.conns.size > 1 ? Buffer.from(text) : text;
    let sent = 0;
    for (const c of this.conns) {
      if (c.ws.readyState === WebSocket.OPEN && this.send(c, data)) sent++;
    }
    if (this.log.isLevelEnabled('debug')) this.log.debug({ clients: sent }, 'notification sent');
  }

  /**
   * Stop accepting, let in-flight requests finish (at most drainMs), then
   * close every socket. Afterwards, drainedInTime says whether every request finished.
   */
  close(opts: { drainMs?: number } = {}): Promise<void> {
    this.closed ??= this.doClose(opts.drainMs ?? 10_000);
    return this.closed;
  }

  /** False once close() cut requests at the drain deadline. */
  get drainedInTime(): boolean {
    return this.drained;
  }

  private drained = true;

  private async doClose(drainMs: number): Promise<void> {
    this.closing = true;
    this.dispatcher.startClosing();
    if (this.pingTimer) clearInterval(this.pingTimer);
    const httpClosed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.http.closeIdleConnections();
    const inFlight = this.dispatcher.inFlight;
    if (inFlight > 0) {
      this.log.info({ inFlight, drainMs }, 'waiting for in-flight requests');
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), drainMs);
      });
      const timedOut = await Promise.race([this.dispatcher.whenIdle().then(() => false), expired]);
      clearTimeout(timer);
      if (timedOut) {
        this.drained = false;
        this.log.warn({ inFlight: this.dispatcher.inFlight }, 'drain deadline passed; closing anyway');
      }
    }
    for (const c of this.conns) c.ws.close(1001, 'server shutting down');
    const stompClosed = this.stomp.close();
    if (this.conns.size > 0) {
      // Give clients a moment to answer the close frame, then cut.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, 1000);
        }),
        this.whenNoConnections(),
      ]);
      clearTimeout(timer);
      for (const c of this.conns) c.ws.terminate();
    }
    await stompClosed;
    this.wss.close();
    this.guard.close();
    this.http.closeAllConnections();
    for (const socket of this.sockets) socket.destroy();
    await httpClosed;
    this.log.info('rpc server closed');
  }

  private noConnWaiters: (() => void)[] = [];

  private whenNoConnections(): Promise<void> {
    if (this.conns.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.noConnWaiters.push(resolve));
  }

  private discoverDocument(): OpenRpcDocument {
    this.openrpc ??= buildOpenRpcDocument(this.opts.methods, {
      title: this.opts.serverName,
      version: this.opts.apiVersion,
      serverUrl: this.url(),
    });
    return this.openrpc;
  }

  private attach(): void {
    this.http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.onUpgrade(req, socket, head),
    );
    this.http.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (!this.guard.requestStarted(req.socket)) return;
      res.once('close', () => this.guard.requestEnded(req.socket));
      this.onRequest(req, res);
    });
    this.http.on('connection', (socket: Socket) => {
      socket.on('error', () => {});
      this.guard.admit(socket);
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.http.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      socket.on('error', () => {});
      // TLS-level failures are logged by tlsClientError; there is no HTTP to answer with.
      if (isTlsLevelError(err)) {
        socket.destroy();
        return;
      }
      const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      if (timeout) this.observer.refused?.('timeout');
      const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
      this.log.info(
        { code: err.code, remote: socket.remoteAddress },
        timeout
          ? 'handshake timeout: request head not received in time'
          : tooLarge
            ? 'request head too large'
            : 'bad HTTP request',
      );
      if (socket.writable && !socket.writableEnded) {
        socket.end(
          timeout
            ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n'
            : tooLarge
              ? 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n'
              : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n',
        );
      } else {
        socket.destroy();
      }
    });
    if (this.tls?.requireClientCert) this.checkClientCerts();
    if (this.tls) {
      this.http.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
        this.log.info(
          { code: err.code, err: err.message, remote: socket.remoteAddress },
          'TLS handshake failed',
        );
        this.observer.refused?.('tls');
      });
    }
  }

  /**
   * Every TLS connection passes here before HTTP or STOMP sees it: one whose
   * client certificate is missing or not valid for tls.ca gets an HTTP 403
   * naming why, and nothing else.
   */
  private checkClientCerts(): void {
    const inner = this.http.listeners('secureConnection') as ((s: TLSSocket) => void)[];
    this.http.removeAllListeners('secureConnection');
    this.http.on('secureConnection', (socket: TLSSocket) => {
      const problem = clientCertProblem(socket);
      if (problem === null) {
        for (const h of inner) h.call(this.http, socket);
        return;
      }
      this.log.warn(
        { remote: socket.remoteAddress, code: problem.code, problem: problem.text },
        'client certificate refused',
      );
      this.observer.refused?.('tls');
      socket.on('error', () => {});
      const body = `client certificate refused: ${problem.text} [${problem.code}]\n`;
      // Keep reading (the client's request) so closing does not reset the answer away.
      socket.resume();
      socket.end(
        `HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      setTimeout(() => socket.destroy(), 2000).unref();
    });
  }

  /** The Origin/Host policy for any request; logs and returns the reason when refused. */
  private refusedByOrigin(req: IncomingMessage, socket: Socket, path: string | null): string | null {
    const origin = req.headers.origin;
    const reason = this.origins.refusal({ origin, host: req.headers.host });
    if (reason !== null) {
      this.observer.refused?.('origin');
      this.log.warn(
        {
          remote: socket.remoteAddress,
          path: (path ?? '').slice(0, 200),
          origin: origin?.slice(0, 200),
          host: req.headers.host?.slice(0, 200),
          reason,
        },
        'request refused: origin or host not allowed',
      );
    }
    return reason;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    res.on('error', () => {});
    const path = pathOf(req.url);
    if (path === null) {
      res.writeHead(400, { 'Content-Type': 'text/plain' }).end('bad request target\n');
      return;
    }
    const refused = this.refusedByOrigin(req, req.socket, path);
    if (refused !== null) {
      res
        .writeHead(403, { 'Content-Type': 'text/plain', Connection: 'close' })
        .end(`forbidden: ${refused}\n`);
      return;
    }
    const route = this.opts.routes?.find((r) => routeMatches(r, path));
    if (route) {
      route.handle(req, res, path, this.routeCtx).catch((err: unknown) => {
        this.log.error({ err, route: route.prefix }, 'http route crashed');
        if (!res.headersSent) res.writeHead(500).end();
      });
      return;
    }
    if (path === RPC_PATH) {
      res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' }).end('use a WebSocket\n');
      return;
    }
    if (this.statics) {
      this.statics.serve(req, res, path).catch((err: unknown) => {
        this.log.error({ err }, 'static handler crashed');
        if (!res.headersSent) res.writeHead(500).end();
      });
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
  }

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    if (!this.guard.requestStarted(socket)) return;
    const path = pathOf(req.url);
    if (this.closing) {
      rejectUpgrade(socket, 503, 'Service Unavailable');
      return;
    }
    if (path !== RPC_PATH) {
      this.log.info(
        { path: (req.url ?? '').slice(0, 200), remote: socket.remoteAddress },
        'upgrade refused: unknown path',
      );
      rejectUpgrade(socket, 404, 'Not Found');
      return;
    }
    if (this.refusedByOrigin(req, socket, path) !== null) {
      rejectUpgrade(socket, 403, 'Forbidden');
      return;
    }
    if (this.connectionCount() >= this.limits.maxConnections) {
      this.log.warn(
        { remote: socket.remoteAddress, max: this.limits.maxConnections },
        'upgrade refused: too many connections',
      );
      this.observer.refused?.('limits');
      rejectUpgrade(socket, 503, 'Service Unavailable');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.guard.upgraded(socket);
      this.onConnection(ws, req);
    });
  }

  private onConnection(ws: WebSocket, req: IncomingMessage): void {
    const connectionId = `c${++this.seq}`;
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const log = this.log.child({ conn: connectionId });
    const conn: Connection = {
      connectionId,
      remote,
      log,
      inFlight: 0,
      maxInFlight: this.limits.maxInFlightPerConnection,
      gone: false,
      ws,
      socket: req.socket,
      corked: false,
      alive: true,
    };
    this.conns.add(conn);
    let peer: string | undefined;
    if (this.tls) {
      const cert = (req.socket as TLSSocket).getPeerCertificate?.();
      if (cert && typeof cert.subject === 'object') peer = String(cert.subject.CN);
    }
    log.info({ remote, peer, clients: this.conns.size }, 'client connected');
    // ?since=SEQ[&bootId=ID] resumes the event stream; otherwise held unheard outcomes are replayed.
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    const resume = parseResumePoint(q.get('since'), q.get('bootId'));
    if (resume === null) {
      log.info(
        { url: (req.url ?? '').slice(0, 200) },
        'bad resume point: since must be a sequence number, bootId a UUID',
      );
      ws.close(1008, 'since must be a sequence number and bootId a UUID');
    } else {
      for (const e of this.journal.replayFor(resume)) this.send(conn, e.text);
    }
    for (const fn of this.connectListeners) {
      try {
        fn(connectionId);
      } catch (err) {
        log.error({ err }, 'connect listener failed');
      }
    }
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) {
        // JSON-RPC travels in text frames; binary is refused, not guessed at.
        log.warn({ bytes: rawLength(data) }, 'binary message refused: closing with 1003');
        ws.close(1003, 'JSON-RPC needs text frames');
        return;
      }
      this.onMessage(conn, data);
    });
    ws.on('pong', () => {
      conn.alive = true;
    });
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        log.warn({ max: this.limits.maxPayloadBytes }, 'message too large: closing with 1009');
      } else {
        log.info({ code: err.code, err: err.message }, 'websocket error');
      }
    });
    ws.on('close', (code: number, reason: Buffer) => {
      conn.gone = true;
      this.conns.delete(conn);
      log.info(
        { code, reason: reason.toString().slice(0, 120), inFlight: conn.inFlight },
        'client disconnected',
      );
      if (this.conns.size === 0 && this.noConnWaiters.length > 0) {
        const waiters = this.noConnWaiters;
        this.noConnWaiters = [];
        for (const w of waiters) w();
      }
    });
  }

  private onMessage(conn: Connection, data: RawData): void {
    const text = Buffer.isBuffer(data)
      ? data.toString('utf8')
      : Array.isArray(data)
        ? Buffer.concat(data).toString('utf8')
        : Buffer.from(data).toString('utf8');
    const r = this.dispatcher.handleText(text, conn);
    if (r === null) return;
    if (isThenable(r)) {
      r.then(
        (res) => {
          if (res !== null) this.reply(conn, res);
        },
        (err: unknown) => conn.log.error({ err }, 'dispatch failed'),
      );
    } else {
      this.reply(conn, r);
    }
  }

  private reply(conn: Connection, res: JSONRPCResponse | JSONRPCResponse[]): void {
    if (conn.ws.readyState !== WebSocket.OPEN) {
      conn.log.info(
        { ids: Array.isArray(res) ? res.map((r) => r.id) : res.id },
        'reply not delivered: client gone (request completed)',
      );
      return;
    }
    let text: string;
    try {
      text = stringifyReply(res);
    } catch (err) {
      text = stringifyReply(unserialisable(res, err, conn.log));
    }
    // Lengths in UTF-16 units: JSON-RPC replies are nearly all ASCII.
    if (text.length > this.limits.maxBufferedBytes) {
      // One reply bigger than a client may ever have queued: answer that instead.
      const correlationId = crypto.randomUUID();
      conn.log.error(
        { bytes: text.length, max: this.limits.maxBufferedBytes, correlationId },
        'reply too large',
      );
      const one = (r: JSONRPCResponse): JSONRPCResponse => ({
        jsonrpc: '2.0',
        id: r.id,
        error: { code: RpcErrorCode.UNEXPECTED, message: 'reply too large', data: { correlationId } },
      });
      text = JSON.stringify(Array.isArray(res) ? res.map(one) : one(res));
    }
    this.send(conn, text);
  }

  /** false if the client is too slow to keep up and was dropped. */
  private send(conn: Connection, text: string | Buffer): boolean {
    // Checked with this message counted, before it is queued: a client that
    // does not read never holds more than the cap.
    const buffered = conn.ws.bufferedAmount;
    if (buffered > 0 && buffered + text.length > this.limits.maxBufferedBytes) {
      conn.log.warn(
        { bufferedBytes: buffered, messageBytes: text.length, max: this.limits.maxBufferedBytes },
        'client not reading: output buffer over the cap, dropping it',
      );
      conn.ws.terminate();
      return false;
    }
    // Replies and notifications of one turn of the event loop leave in one
    // write: the per-message write syscall, not our code, is the main cost.
    // Uncorked in the check phase, after the promise continuations of this
    // turn: an unplug's device_removed and VM_status (sent as the event is
    // applied) and its reply (a few microtasks later) go out together.
    if (!conn.corked) {
      conn.corked = true;
      conn.socket.cork();
      setImmediate(() => {
        conn.corked = false;
        conn.socket.uncork();
      });
    }
    conn.ws.send(text, { binary: false });
    return true;
  }

  private startKeepalive(): void {
    this.pingTimer = setInterval(() => {
      for (const c of this.conns) {
        if (!c.alive) {
          c.log.warn({ intervalMs: this.limits.pingIntervalMs }, 'no pong since last ping: dropping client');
          c.ws.terminate();
          continue;
        }
        c.alive = false;
        c.ws.ping();
      }
    }, this.limits.pingIntervalMs);
    this.pingTimer.unref();
  }
}

function rawLength(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data.byteLength;
}

function isTlsLevelError(err: NodeJS.ErrnoException & { library?: string }): boolean {
  const code = err.code ?? '';
  return code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || err.library !== undefined;
}

function definedOnly(l: RpcLimits): RpcLimits {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(l)) if (typeof v === 'number') out[k] = v;
  return out as RpcLimits;
}

/** A result JSON cannot carry (BigInt, cycle): answer code 100 instead, log why. */
function unserialisable(
  res: JSONRPCResponse | JSONRPCResponse[],
  err: unknown,
  log: Logger,
): JSONRPCResponse | JSONRPCResponse[] {
  const one = (r: JSONRPCResponse): JSONRPCResponse => {
    try {
      stringifyReply(r);
      return r;
    } catch {
      const correlationId = crypto.randomUUID();
      log.error({ err, correlationId, id: r.id }, 'result not serialisable as JSON');
      return {
        jsonrpc: '2.0',
        id: r.id,
        error: { code: RpcErrorCode.UNEXPECTED, message: 'unexpected error', data: { correlationId } },
      };
    }
  };
  return Array.isArray(res) ? res.map(one) : one(res);
}
