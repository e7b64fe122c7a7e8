// Shared pieces of the rpc transport tests: a log capture, a small JSON-RPC
// WebSocket client that correlates replies, and a test method set.
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';
import { WebSocket } from 'ws';
import { ErrorCode } from '../../../src/api/contract.js';
import { RpcError } from '../../../src/rpc/errors.js';
import type { MethodSpec } from '../../../src/rpc/method.js';
import { RpcServer, type RpcServerOptions } from '../../../src/rpc/server.js';

export type LogLine = Record<string, unknown> & { msg?: string; level: number };

export class LogCapture {
  readonly lines: LogLine[] = [];
  private readonly events = new EventEmitter();
  readonly logger: Logger;

  constructor(level = 'info') {
    const stream = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        for (const l of chunk.toString('utf8').split('\n')) {
          if (l.trim() === '') continue;
          const parsed = JSON.parse(l) as LogLine;
          this.lines.push(parsed);
          this.events.emit('line', parsed);
        }
        cb();
      },
    });
    this.logger = pino({ level }, stream);
  }

  find(pred: (l: LogLine) => boolean): LogLine | undefined {
    return this.lines.find(pred);
  }

  /** Resolves with the first line (past or future) matching pred; rejects after timeoutMs. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine> {
    const hit = this.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.events.off('line', onLine);
        reject(new Error('log line not seen before the deadline'));
      }, timeoutMs);
      const onLine = (l: LogLine) => {
        if (!pred(l)) return;
        clearTimeout(timer);
        this.events.off('line', onLine);
        resolve(l);
      };
      this.events.on('line', onLine);
    });
  }
}

/** A gate a test opens to let a waiting handler finish: synchronisation without sleeps. */
export class Gates {
  private readonly gates = new Map<string, { promise: Promise<void>; open: () => void }>();
  readonly started = new EventEmitter();
  readonly finished: string[] = [];

  private get(key: string) {
    let g = this.gates.get(key);
    if (!g) {
      let open!: () => void;
      const promise = new Promise<void>((r) => {
        open = r;
      });
      g = { promise, open };
      this.gates.set(key, g);
    }
    return g;
  }

  wait(key: string): Promise<void> {
    this.started.emit(key);
    return this.get(key).promise;
  }

  open(key: string): void {
    this.get(key).open();
  }

  whenStarted(key: string): Promise<void> {
    return new Promise((resolve) => this.started.once(key, () => resolve()));
  }
}

export interface Reply {
  jsonrpc: string;
  id: string | number | null;
  result?: unknown;
  error?: { code: number; message: string; data?: Record<string, unknown> };
}

export class TestClient {
  private readonly pending = new Map<string | number, (r: Reply) => void>();
  readonly notifications: { method: string; params: unknown }[] = [];
  readonly other: unknown[] = [];
  private readonly events = new EventEmitter();
  private nextId = 1;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const msg = JSON.parse(data.toString('utf8')) as unknown;
      this.events.emit('message', msg);
      if (Array.isArray(msg)) {
        // A batch reply is kept whole; waiters for ids inside it are served too.
        for (const m of msg) this.settle(m as Partial<Reply>);
        this.pushOther(msg);
        return;
      }
      const r = msg as Partial<Reply> & { method?: string; params?: unknown };
      if (typeof r.method === 'string' && r.id === undefined) {
        this.notifications.push({ method: r.method, params: r.params });
        this.events.emit('notification');
        return;
      }
      if (!this.settle(r)) this.pushOther(msg);
    });
  }

  private settle(r: Partial<Reply>): boolean {
    if (r.id === undefined || r.id === null) return false;
    const waiter = this.pending.get(r.id);
    if (!waiter) return false;
    this.pending.delete(r.id);
    waiter(r as Reply);
    return true;
  }

  private pushOther(m: unknown): void {
    this.other.push(m);
    this.events.emit('other', m);
  }

  static connect(url: string, opts: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, opts);
      ws.once('open', () => resolve(new TestClient(ws)));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }

  call(method: string, params?: unknown): Promise<Reply> {
    const id = this.nextId++;
    const p = this.expect(id);
    this.ws.send(
      JSON.stringify(
        params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params },
      ),
    );
    return p;
  }

  expect(id: string | number, timeoutMs = 5000): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply for id ${String(id)}`));
      }, timeoutMs);
      this.pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  /** Next message of any kind that is not a reply we wait for (e.g. id null errors, batches). */
  nextOther(timeoutMs = 5000): Promise<unknown> {
    const queued = this.other.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message')), timeoutMs);
      this.events.once('other', () => {
        clearTimeout(timer);
        resolve(this.other.shift());
      });
    });
  }

  nextMessage(timeoutMs = 5000): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no message')), timeoutMs);
      this.events.once('message', (m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  }

  waitNotifications(n: number, timeoutMs = 5000): Promise<void> {
    if (this.notifications.length >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('notifications missing')), timeoutMs);
      const on = () => {
        if (this.notifications.length < n) return;
        clearTimeout(timer);
        this.events.off('notification', on);
        resolve();
      };
      this.events.on('notification', on);
    });
  }

  closed(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.CLOSED)
      return Promise.resolve({ code: -1, reason: 'already closed' });
    return new Promise((resolve) =>
      this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  close(): Promise<void> {
    const done = this.closed().then(() => undefined);
    this.ws.close();
    return done;
  }
}

export interface TestMethodsHandle {
  methods: MethodSpec[];
  gates: Gates;
  calls: { method: string; params: unknown }[];
}

export function testMethods(): TestMethodsHandle {
  const gates = new Gates();
  const calls: { method: string; params: unknown }[] = [];
  const add: MethodSpec<{ a: number; b: number }, number> = {
    name: 'Echo.add',
    summary: 'Adds two integers',
    params: {
      type: 'object',
      properties: {
        a: { type: 'integer', minimum: -1000000, maximum: 1000000, description: 'first addend' },
        b: { type: 'integer', minimum: -1000000, maximum: 1000000 },
      },
      required: ['a', 'b'],
      additionalProperties: false,
    },
    result: { type: 'integer' },
    errors: [{ code: 100, message: 'unexpected error' }],
    readOnly: true,
    handler: async (p, ctx) => {
      calls.push({ method: 'Echo.add', params: p });
      // A handler's fields for its "rpc call" line (as the VM methods add their opId).
      ctx.logFields = { sum: p.a + p.b };
      return p.a + p.b;
    },
  };
  const ping: MethodSpec<Record<string, never>, boolean> = {
    name: 'Host.ping',
    summary: 'Liveness',
    params: { type: 'object', properties: {}, additionalProperties: false },
    result: { type: 'boolean' },
    logLevel: 'debug',
    readOnly: true,
    handler: async () => true,
  };
  const wait: MethodSpec<{ key: string }, string> = {
    name: 'Test.wait',
    summary: 'Waits until the test opens the gate',
    params: {
      type: 'object',
      properties: { key: { type: 'string', maxLength: 64 } },
      required: ['key'],
      additionalProperties: false,
    },
    result: { type: 'string' },
    handler: async (p) => {
      await gates.wait(p.key);
      gates.finished.push(p.key);
      return `done ${p.key}`;
    },
  };
  const fail: MethodSpec<{ kind: 'rpc' | 'crash' | 'bigint' }, unknown> = {
    name: 'Test.fail',
    summary: 'Fails in a chosen way',
    params: {
      type: 'object',
      properties: { kind: { type: 'string', enum: ['rpc', 'crash', 'bigint'] } },
      required: ['kind'],
      additionalProperties: false,
    },
    result: {},
    handler: async (p, ctx) => {
      ctx.logFields = { opId: `op-${p.kind}` };
      if (p.kind === 'rpc')
        throw new RpcError(ErrorCode.HOTUNPLUG_FAILED, 'guest rejected', { reason: 'guest-rejected' });
      if (p.kind === 'bigint') return { n: 1n };
      throw new Error('secret internal detail');
    },
  };
  const memory: MethodSpec<{ vmID: string; memory: { size: number; node: number } }, string> = {
    name: 'VM.hotplugMemory',
    summary: 'Nested params for validation tests',
    params: {
      type: 'object',
      properties: {
        vmID: { type: 'string', minLength: 1, maxLength: 64 },
        memory: {
          type: 'object',
          properties: {
            size: { type: 'integer', minimum: 1, maximum: 16777216 },
            node: { type: 'integer', minimum: 0, maximum: 63 },
          },
          required: ['size', 'node'],
          additionalProperties: false,
        },
      },
      required: ['vmID', 'memory'],
      additionalProperties: false,
    },
    result: { type: 'string' },
    handler: async (p) => {
      calls.push({ method: 'VM.hotplugMemory', params: p });
      return 'ok';
    },
  };
  return { methods: [add, ping, wait, fail, memory] as MethodSpec[], gates, calls };
}

export async function startServer(
  overrides: Partial<RpcServerOptions> & { logger: Logger },
): Promise<RpcServer> {
  return RpcServer.start({
    host: '127.0.0.1',
    port: 0,
    methods: testMethods().methods,
    apiVersion: '1.0-test',
    serverName: 'vmhostd-test',
    ...overrides,
  });
}
