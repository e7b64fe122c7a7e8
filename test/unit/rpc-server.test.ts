// Transport limits and lifecycle: message size, connections, in-flight cap,
// handshake timeout, keepalive, slow readers, notifications, disconnects,
// path routing, draining close, and the listen policy.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { checkPlainListen, isLoopbackHost } from '../../src/rpc/listen-policy.js';
import type { RpcServer } from '../../src/rpc/server.js';
import { LogCapture, startServer, TestClient, testMethods } from './rpc/helpers.js';

const servers: RpcServer[] = [];
const clients: TestClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  for (const s of servers.splice(0)) await s.close({ drainMs: 50 });
});

async function start(opts: Parameters<typeof startServer>[0]): Promise<RpcServer> {
  const s = await startServer(opts);
  servers.push(s);
  return s;
}
async function client(url: string, opts?: ConstructorParameters<typeof WebSocket>[2]): Promise<TestClient> {
  const c = await TestClient.connect(url, opts);
  clients.push(c);
  return c;
}

/** A raw WebSocket handshake over TCP, so a test can then stop reading. */
function rawUpgrade(port: number, path = '/jsonrpc'): Promise<{ socket: Socket; head: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      resolve({ socket, head: buf.slice(0, end) });
    };
    socket.on('data', onData);
  });
}

describe('rpc server limits', () => {
  it('a message over maxPayload closes the connection with 1009 and logs it', async () => {
    const logs = new LogCapture();
    const s = await start({ logger: logs.logger });
    const c = await client(s.url());
    const closed = c.closed();
    c.ws.send(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'Echo.add',
        params: { a: 'x'.repeat(2 * 1024 * 1024) },
      }),
    );
    expect((await closed).code).toBe(1009);
    await logs.waitFor((l) => /message too large/.test(String(l.msg)));
    // The server itself is fine.
    const c2 = await client(s.url());
    expect((await c2.call('Echo.add', { a: 1, b: 2 })).result).toBe(3);
  });

  it('requests over the in-flight cap get -32000 at once; the others complete', async () => {
    const logs = new LogCapture();
    const t = testMethods();
    const s = await start({
      logger: logs.logger,
      methods: t.methods,
      limits: { maxInFlightPerConnection: 2 },
    });
    const c = await client(s.url());
    const started = Promise.all([t.gates.whenStarted('k1'), t.gates.whenStarted('k2')]);
    const p1 = c.call('Test.wait', { key: 'k1' });
    const p2 = c.call('Test.wait', { key: 'k2' });
    await started;
    const r3 = await c.call('Test.wait', { key: 'k3' });
    expect(r3.error).toEqual({ code: -32000, message: 'too many requests in flight' });
    await logs.waitFor((l) => /too many requests in flight/.test(String(l.msg)));
    // Another connection has its own budget.
    const other = await client(s.url());
    expect((await other.call('Echo.add', { a: 1, b: 1 })).result).toBe(2);
    t.gates.open('k1');
    t.gates.open('k2');
    expect((await p1).result).toBe('done k1');
    expect((await p2).result).toBe('done k2');
    // Budget is back.
    expect((await c.call('Echo.add', { a: 2, b: 2 })).result).toBe(4);
  });

  it('a batch larger than the in-flight cap is refused whole; a fitting one counts each entry', async () => {
    const logs = new LogCapture();
    const t = testMethods();
    const s = await start({
      logger: logs.logger,
      methods: t.methods,
      limits: { maxInFlightPerConnection: 3 },
    });
    const c = await client(s.url());
    const batch = (n: number) =>
      JSON.stringify(
        Array.from({ length: n }, (_, i) => ({
          jsonrpc: '2.0',
          id: i,
          method: 'Test.wait',
          params: { key: `b${i}` },
        })),
      );
    c.ws.send(batch(5));
    expect(await c.nextOther()).toMatchObject({ id: null, error: { code: -32600, data: { limit: 3 } } });
    // One request running leaves room for two: a 3-entry batch is answered 2 + 1 busy.
    const running = c.call('Test.wait', { key: 'x' });
    await t.gates.whenStarted('x');
    const started = Promise.all([t.gates.whenStarted('b0'), t.gates.whenStarted('b1')]);
    c.ws.send(batch(3));
    await started;
    for (const k of ['x', 'b0', 'b1']) t.gates.open(k);
    const r = (await c.nextOther()) as { id: number; result?: string; error?: { code: number } }[];
    expect(r.filter((x) => x.result !== undefined)).toHaveLength(2);
    expect(r.filter((x) => x.error?.code === -32000)).toHaveLength(1);
    expect((await running).result).toBe('done x');
  });

  it('connections over maxConnections get HTTP 503 on upgrade, logged', async () => {
    const logs = new LogCapture();
    const s = await start({ logger: logs.logger, limits: { maxConnections: 2 } });
    await client(s.url());
    const c2 = await client(s.url());
    await expect(TestClient.connect(s.url())).rejects.toThrow('HTTP 503');
    await logs.waitFor((l) => /too many connections/.test(String(l.msg)));
    expect(s.connectionCount()).toBe(2);
    // A slot frees up when a client leaves.
    await c2.close();
    await logs.waitFor((l) => l.msg === 'client disconnected');
    const c3 = await client(s.url());
    expect((await c3.call('Host.ping')).result).toBe(true);
  });

  it('upgrades on other paths get 404', async () => {
    const logs = new LogCapture();
    const s = await start({ logger: logs.logger });
    const url = s.url().replace('/jsonrpc', '/other');
    await expect(TestClient.connect(url)).rejects.toThrow('HTTP 404');
    const { head, socket } = await rawUpgrade(s.address().port, '/jsonrpc/../x');
    socket.destroy();
    expect(head).toMatch(/^HTTP\/1\.1 404/);
  });

  it.each([
    ['nothing', ''],
    ['half a request head', 'GET /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\n'],
  ])('a client that sends %s within the handshake timeout is cut off, logged', async (_what, bytes) => {
    const logs = new LogCapture();
    const s = await start({ logger: logs.logger, limits: { handshakeTimeoutMs: 200 } });
    const socket = connect(s.address().port, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((r) => socket.once('connect', () => r()));
    if (bytes !== '') socket.write(bytes);
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString();
    });
    const t0 = Date.now();
    await new Promise<void>((r) => socket.once('close', () => r()));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(got).toMatch(/^HTTP\/1\.1 408/);
    await logs.waitFor((l) => /handshake timeout/.test(String(l.msg)));
  });

  it('keepalive drops a client that stops answering pings and keeps one that answers', async () => {
    const logs = new LogCapture();
    const s = await start({ logger: logs.logger, limits: { pingIntervalMs: 100 } });
    const alive = await client(s.url());
    const dead = await client(s.url(), { autoPong: false });
    const deadClosed = dead.closed();
    await logs.waitFor((l) => /no pong/.test(String(l.msg)));
    expect((await deadClosed).code).toBe(1006);
    expect(alive.ws.readyState).toBe(WebSocket.OPEN);
    expect((await alive.call('Host.ping')).result).toBe(true);
    expect(s.connectionCount()).toBe(1);
  });

  it('notify reaches every connected client', async () => {
    const logs = new LogCapture();
    const s = await start({ logger: logs.logger });
    const a = await client(s.url());
    const b = await client(s.url());
    // Encoded once for all clients, still sent as text frames.
    const raw = new WebSocket(s.url());
    await new Promise((r) => raw.once('open', r));
    const frames: boolean[] = [];
    const rawGot = new Promise<void>((resolve) =>
      raw.on('message', (_d, isBinary) => {
        frames.push(isBinary);
        if (frames.length === 2) resolve();
      }),
    );
    s.notify('|virt|device_removed|vm-1', { alias: 'ua-1', memSize: 1024, late: false });
    s.notify('|virt|VM_status|vm-1', { vmId: 'vm-1', status: 'Up' });
    await Promise.all([a.waitNotifications(2), b.waitNotifications(2), rawGot]);
    expect(frames).toEqual([false, false]);
    raw.terminate();
    for (const c of [a, b]) {
      expect(c.notifications).toEqual([
        { method: '|virt|device_removed|vm-1', params: { alias: 'ua-1', memSize: 1024, late: false } },
        { method: '|virt|VM_status|vm-1', params: { vmId: 'vm-1', status: 'Up' } },
      ]);
    }
  });

  it('a client that stops reading is dropped once its output buffer passes the cap, logged', async () => {
    const logs = new LogCapture();
    const s = await start({ logger: logs.logger, limits: { maxBufferedBytes: 256 * 1024 } });
    const reader = await client(s.url());
    const { socket } = await rawUpgrade(s.address().port);
    socket.on('error', () => {});
    socket.pause();
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    await logs.waitFor((l) => l.msg === 'client connected' && l.clients === 2);
    const big = 'x'.repeat(256 * 1024);
    const overCap = (l: { msg?: unknown }) => /output buffer over the cap/.test(String(l.msg));
    // Yield between sends so the reading client keeps up; only the paused one falls behind.
    for (let i = 0; i < 400 && !logs.find(overCap); i++) {
      s.notify('bulk', { i, big });
      await new Promise((r) => setImmediate(r));
    }
    await logs.waitFor(overCap);
    await logs.waitFor((l) => l.msg === 'client disconnected' && l.code === 1006);
    expect(s.connectionCount()).toBe(1);
    socket.destroy();
    await closed;
    // The reading client was not affected.
    expect((await reader.call('Host.ping')).result).toBe(true);
  });

  it('a request whose client disconnected still runs to completion and is logged', async () => {
    const logs = new LogCapture();
    const t = testMethods();
    const s = await start({ logger: logs.logger, methods: t.methods });
    const c = await client(s.url());
    const started = t.gates.whenStarted('gone');
    c.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 77, method: 'Test.wait', params: { key: 'gone' } }));
    await started;
    c.ws.terminate();
    await logs.waitFor((l) => l.msg === 'client disconnected' && l.inFlight === 1);
    t.gates.open('gone');
    const line = await logs.waitFor((l) => l.method === 'Test.wait' && l.id === 77);
    expect(line).toMatchObject({ outcome: 'ok', clientGone: true });
    expect(t.gates.finished).toContain('gone');
    await logs.waitFor((l) => /reply not delivered/.test(String(l.msg)));
  });

  it('close() lets in-flight requests finish, refuses new work, then closes sockets', async () => {
    const logs = new LogCapture();
    const t = testMethods();
    const s = await startServer({ logger: logs.logger, methods: t.methods });
    const c = await client(s.url());
    const started = t.gates.whenStarted('drain');
    const pending = c.call('Test.wait', { key: 'drain' });
    await started;
    const closing = s.close({ drainMs: 5000 });
    const refused = await c.call('Echo.add', { a: 1, b: 1 });
    expect(refused.error).toEqual({ code: -32000, message: 'server is shutting down' });
    const closedEvent = c.closed();
    t.gates.open('drain');
    expect((await pending).result).toBe('done drain');
    await closing;
    expect((await closedEvent).code).toBe(1001);
    await expect(TestClient.connect(s.url())).rejects.toThrow();
  });

  it('close() is bounded by drainMs when a handler never finishes', async () => {
    const logs = new LogCapture();
    const t = testMethods();
    const s = await startServer({ logger: logs.logger, methods: t.methods });
    const c = await client(s.url());
    const started = t.gates.whenStarted('never');
    void c.call('Test.wait', { key: 'never' }).catch(() => {});
    await started;
    const t0 = Date.now();
    await s.close({ drainMs: 100 });
    expect(Date.now() - t0).toBeLessThan(2000);
    await logs.waitFor((l) => /drain deadline passed/.test(String(l.msg)));
    t.gates.open('never');
  });
});

describe('listen policy', () => {
  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]'])
      expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', 'example.org', '128.0.0.1']) {
      expect(isLoopbackHost(h)).toBe(false);
    }
  });

  it('without TLS a non-loopback host is refused at start unless allowInsecure', async () => {
    const logs = new LogCapture();
    await expect(startServer({ logger: logs.logger, host: '0.0.0.0' })).rejects.toThrow(
      /refusing to listen on non-loopback address 0\.0\.0\.0 without TLS/,
    );
    expect(checkPlainListen('0.0.0.0', true)).toBe(true);
    expect(checkPlainListen('127.0.0.1', false)).toBe(false);
  });

  it('with allowInsecure a non-loopback listener starts and warns', async () => {
    const logs = new LogCapture();
    // Binds 0.0.0.0 on an ephemeral port; the only traffic is over loopback.
    const s = await start({ logger: logs.logger, host: '0.0.0.0', allowInsecure: true });
    await logs.waitFor((l) => l.level === 40 && /WITHOUT TLS/.test(String(l.msg)));
    const c = await client(`ws://127.0.0.1:${s.address().port}/jsonrpc`);
    expect((await c.call('Host.ping')).result).toBe(true);
  });
});
