// Hostile and clumsy clients against the transport (issue 16): foreign
// Origin/Host (cross-site pages, DNS rebinding), oversized and multiplying
// batches, notifications to methods that change state, slow readers whose
// replies would overflow the cap, binary frames, huge headers. Each test fails
// on the transport as it was before the fix.
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { batchExceeds } from '../../src/rpc/dispatcher.js';
import type { MethodSpec } from '../../src/rpc/method.js';
import { OriginPolicy } from '../../src/rpc/origin-policy.js';
import type { RpcServer } from '../../src/rpc/server.js';
import { LogCapture, type Reply, startServer, TestClient, testMethods } from './rpc/helpers.js';

const servers: RpcServer[] = [];
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  for (const s of servers.splice(0)) await s.close({ drainMs: 50 });
});

async function start(opts: Omit<Parameters<typeof startServer>[0], 'logger'> & { logs?: LogCapture } = {}) {
  const logs = opts.logs ?? new LogCapture();
  const s = await startServer({ logger: logs.logger, ...opts });
  servers.push(s);
  return { s, logs, port: s.address().port };
}

/** Opens a WebSocket with the given headers; resolves the HTTP status of a refusal, or 101. */
function upgradeStatus(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    sockets.push(ws);
    ws.once('open', () => resolve(101));
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', reject);
  });
}

function httpStatus(port: number, method: string, path: string, headers: Record<string, string>) {
  return new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(method === 'PUT' ? '<vm><memory>1073741824</memory></vm>' : undefined);
  });
}

describe('Origin and Host checks (cross-site pages, DNS rebinding)', () => {
  it('refuses a WebSocket upgrade from a foreign Origin with 403 and a log line; the handler never runs', async () => {
    const t = testMethods();
    const { s, logs, port } = await start({ methods: t.methods });
    const status = await upgradeStatus(s.url(), {
      Origin: 'http://evil.example',
      Host: `127.0.0.1:${port}`,
    });
    expect(status).toBe(403);
    const line = await logs.waitFor((l) => l.msg === 'request refused: origin or host not allowed');
    expect(line).toMatchObject({ origin: 'http://evil.example', reason: 'Origin is not allowed', level: 40 });
    expect(s.connectionCount()).toBe(0);
  });

  it('refuses a rebound name (Host and Origin evil.example) on a loopback listener', async () => {
    const { s, port } = await start({});
    expect(
      await upgradeStatus(s.url(), { Origin: `http://evil.example:${port}`, Host: `evil.example:${port}` }),
    ).toBe(403);
    // Without Origin too: on loopback the Host must name this daemon.
    expect(await upgradeStatus(s.url(), { Host: `evil.example:${port}` })).toBe(403);
  });

  it("accepts the console's own origin, loopback names, and configured origins and names", async () => {
    const { s, port } = await start({
      allowedOrigins: ['https://engine.example'],
      allowedHosts: ['vmhost.lab'],
    });
    expect(await upgradeStatus(s.url(), { Origin: `http://127.0.0.1:${port}` })).toBe(101);
    expect(
      await upgradeStatus(s.url(), { Origin: `http://localhost:${port}`, Host: `localhost:${port}` }),
    ).toBe(101);
    // Behind `ssh -L 8080:127.0.0.1:PORT` the browser sends its own port in Host and Origin.
    expect(await upgradeStatus(s.url(), { Origin: 'http://127.0.0.1:8080', Host: '127.0.0.1:8080' })).toBe(
      101,
    );
    expect(await upgradeStatus(s.url(), { Origin: 'https://engine.example' })).toBe(101);
    expect(await upgradeStatus(s.url(), { Host: `vmhost.lab:${port}` })).toBe(101);
    // Scheme matters: an https page is not this plain-http console.
    expect(await upgradeStatus(s.url(), { Origin: `https://127.0.0.1:${port}` })).toBe(403);
    // A client without Origin (the CLI, an engine) is fine.
    expect(await upgradeStatus(s.url(), {})).toBe(101);
  });

  it('refuses REST and console requests with a foreign Host or Origin with 403', async () => {
    const t = testMethods();
    const { port } = await start({ methods: t.methods, staticDir: process.cwd() });
    const xml = { 'Content-Type': 'application/xml' };
    expect(await httpStatus(port, 'PUT', '/api/vms/v1', { ...xml, Host: 'evil.example' })).toBe(403);
    expect(await httpStatus(port, 'PUT', '/api/vms/v1', { ...xml, Origin: 'http://evil.example' })).toBe(403);
    expect(await httpStatus(port, 'GET', '/', { Host: `evil.example:${port}` })).toBe(403);
    // The same requests with this daemon's Host get past the check.
    expect(await httpStatus(port, 'PUT', '/api/vms/v1', xml)).not.toBe(403);
    expect(await httpStatus(port, 'GET', '/', {})).not.toBe(403);
  });

  it('off loopback, a request without Origin is never refused for its Host; one with Origin is', () => {
    const p = new OriginPolicy({ listenHost: '0.0.0.0', tls: true, allowedOrigins: [], allowedHosts: [] });
    expect(p.refusal({ host: 'whatever.example:54321' })).toBeNull();
    expect(p.refusal({})).toBeNull();
    expect(p.refusal({ origin: 'https://evil.example', host: 'evil.example' })).not.toBeNull();
    expect(p.refusal({ origin: 'https://localhost:54321', host: 'localhost:54321' })).toBeNull();
    expect(p.refusal({ origin: 'http://localhost:54321', host: 'localhost:54321' })).not.toBeNull();
  });
});

describe('batches', () => {
  const batch = (n: number, entry: (i: number) => unknown) =>
    JSON.stringify(Array.from({ length: n }, (_, i) => entry(i)));
  const ping = (i: number) => ({ jsonrpc: '2.0', id: i, method: 'Host.ping' });

  it('an idle server answers a 64-entry batch fully', async () => {
    const { s } = await start({});
    const c = await TestClient.connect(s.url());
    c.ws.send(batch(64, ping));
    const r = (await c.nextOther()) as Reply[];
    expect(r).toHaveLength(64);
    expect(r.every((x) => x.result === true)).toBe(true);
    c.ws.terminate();
  });

  it('a batch over the cap is refused whole with one -32600 naming the limit, and one log line', async () => {
    const t = testMethods();
    const { s, logs } = await start({ methods: t.methods, limits: { maxInFlightPerConnection: 100 } });
    const c = await TestClient.connect(s.url());
    c.ws.send(batch(65, (i) => ({ jsonrpc: '2.0', id: i, method: 'Echo.add', params: { a: i, b: 0 } })));
    const r = (await c.nextOther()) as Reply;
    expect(r).toMatchObject({ id: null, error: { code: -32600, data: { limit: 64 } } });
    expect(r.error?.message).toMatch(/at most 64 entries/);
    expect(t.calls).toHaveLength(0);
    const refusals = logs.lines.filter((l) => l.msg === 'rpc batch refused: too many entries');
    expect(refusals).toHaveLength(1);
    c.ws.terminate();
  });

  it('a 1 MB batch of 500,000 invalid entries gets one small reply and one log line', async () => {
    const { s, logs } = await start({ limits: { maxPayloadBytes: 2 * 1024 * 1024 } });
    const c = await TestClient.connect(s.url());
    const before = logs.lines.length;
    const text = `[${Array(500_000).fill('1').join(',')}]`;
    c.ws.send(text);
    const reply = (await c.nextOther()) as Reply;
    expect(reply.error?.code).toBe(-32600);
    expect(JSON.stringify(reply).length).toBeLessThan(300);
    // The connection still works, and the whole message cost one line.
    expect((await c.call('Host.ping')).result).toBe(true);
    expect(logs.lines.length - before).toBe(1);
    c.ws.terminate();
  });

  it('entries refused inside a batch are logged as one summary line, not one each', async () => {
    const { s, logs } = await start({});
    const c = await TestClient.connect(s.url());
    const before = logs.lines.length;
    c.ws.send(batch(64, (i) => (i % 2 === 0 ? { nope: i } : { jsonrpc: '2.0', id: i, method: 'No.such' })));
    const r = (await c.nextOther()) as Reply[];
    expect(r).toHaveLength(64);
    const lines = logs.lines.slice(before);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      msg: 'rpc batch: entries refused',
      refused: { 'invalid-request': 32, 'method-not-found': 32 },
    });
    c.ws.terminate();
  });

  it('counts top-level entries without being fooled by strings and nesting', () => {
    expect(batchExceeds('[1,2,3]', 0, 3)).toBe(false);
    expect(batchExceeds('[1,2,3,4]', 0, 3)).toBe(true);
    expect(batchExceeds('[[1,2,3,4],{"a":1,"b":2,"c":3,"d":4}]', 0, 3)).toBe(false);
    expect(batchExceeds('["a,b,c,d,e", "\\",\\",\\",", 1]', 0, 3)).toBe(false);
  });
});

describe('protocol errors are rate-limited per connection', () => {
  it('a stream of bad messages yields a bounded number of log lines, then a count of the rest', async () => {
    const { s, logs } = await start({});
    const c = await TestClient.connect(s.url());
    const before = logs.lines.length;
    for (let i = 0; i < 500; i++) c.ws.send('{"bad json');
    for (let i = 0; i < 500; i++) await c.nextOther();
    const lines = logs.lines.slice(before).filter((l) => l.msg === 'rpc parse error');
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThan(100);
    c.ws.terminate();
  });
});

describe('notifications to methods that change state', () => {
  it('are refused: not executed, logged as a warning, answered with id null', async () => {
    const t = testMethods();
    const { s, logs } = await start({ methods: t.methods });
    const c = await TestClient.connect(s.url());
    c.ws.send(
      JSON.stringify({
        jsonrpc: '2.0',
        method: 'VM.hotplugMemory',
        params: { vmID: 'v', memory: { size: 128, node: 0 } },
      }),
    );
    const r = (await c.nextOther()) as Reply;
    expect(r).toMatchObject({
      id: null,
      error: { code: -32600, data: { method: 'VM.hotplugMemory', rule: 'notification' } },
    });
    // Invalid params are not silent either.
    c.ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'VM.hotplugMemory', params: { bad: 1 } }));
    expect(((await c.nextOther()) as Reply).error?.code).toBe(-32600);
    expect(t.calls).toHaveLength(0);
    const warn = await logs.waitFor((l) => l.msg === 'rpc notification refused: method changes state');
    expect(warn).toMatchObject({ level: 40, method: 'VM.hotplugMemory' });
    // A read-only method may still be notified (and stays silent).
    c.ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'Echo.add', params: { a: 1, b: 2 } }));
    expect((await c.call('Host.ping')).result).toBe(true);
    expect(t.calls).toEqual([{ method: 'Echo.add', params: { a: 1, b: 2 } }]);
    expect(c.other).toHaveLength(0);
    c.ws.terminate();
  });
});

describe('slow readers', () => {
  it('the output cap is checked with the reply counted: a non-reader never has more than the cap queued', async () => {
    const big: MethodSpec<Record<string, never>, string> = {
      name: 'Test.big',
      summary: '300 KB of result',
      params: { type: 'object', properties: {}, additionalProperties: false },
      result: { type: 'string' },
      readOnly: true,
      handler: async () => 'x'.repeat(300 * 1024),
    };
    const max = 1024 * 1024;
    const { s, logs } = await start({ methods: [big], limits: { maxBufferedBytes: max } });
    // A client that sends and never reads.
    const ws = new WebSocket(s.url());
    sockets.push(ws);
    await new Promise<void>((r) => ws.once('open', () => r()));
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const req = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'Test.big' });
    for (let i = 0; i < 40; i++) ws.send(req);
    const line = await logs.waitFor(
      (l) => l.msg === 'client not reading: output buffer over the cap, dropping it',
      10_000,
    );
    expect(Number(line.bufferedBytes)).toBeLessThanOrEqual(max);
  });
});

describe('small items', () => {
  it('a binary frame is refused: the connection closes with 1003, logged', async () => {
    const { s, logs } = await start({});
    const c = await TestClient.connect(s.url());
    const closed = c.closed();
    c.ws.send(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'Host.ping' })), { binary: true });
    expect((await closed).code).toBe(1003);
    await logs.waitFor((l) => l.msg === 'binary message refused: closing with 1003');
  });

  it('a 20 KB request header gets 431', async () => {
    const { port } = await start({});
    const got = await new Promise<string>((resolve) => {
      const sock = connect(port, '127.0.0.1');
      let buf = '';
      sock.on('error', () => {});
      sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
      });
      sock.on('close', () => resolve(buf));
      sock.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
    });
    expect(got).toMatch(/^HTTP\/1\.1 431/);
  });
});
