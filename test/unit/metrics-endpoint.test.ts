// GET /metrics on the real RpcServer (plain and mutual TLS) and on the
// plain loopback listener; the rpc hooks counting requests and refusals.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { DaemonMetrics } from '../../src/metrics/daemon-metrics.js';
import { metricsRoute, startMetricsListener } from '../../src/metrics/http.js';
import type { RpcServer } from '../../src/rpc/server.js';
import { httpsGet, metricsUrlOf, Scrape, scrape } from '../helpers/prom-text.js';
import { waitFor } from '../helpers/wait.js';
import { LogCapture, startServer, TestClient } from './rpc/helpers.js';

const PKI_SCRIPT = resolve(import.meta.dirname, '../../scripts/make-lab-pki.sh');

function serve(metrics: DaemonMetrics, logs: LogCapture, extra: Parameters<typeof startServer>[0]) {
  return startServer({
    observer: metrics.rpcObserver,
    routes: [metricsRoute(metrics, logs.logger)],
    ...extra,
  });
}

describe('/metrics on the daemon listener', () => {
  const logs = new LogCapture();
  const metrics = new DaemonMetrics({ version: 't' });
  let server: RpcServer;
  let url: string;

  beforeAll(async () => {
    server = await serve(metrics, logs, { logger: logs.logger, limits: { maxConnections: 1 } });
    metrics.addClientSource('ws', () => server.connectionCount());
    url = metricsUrlOf(server.url());
  });
  afterAll(() => server.close({ drainMs: 100 }));

  it('serves the exposition (GET and HEAD), refuses other methods with 405', async () => {
    const s = await scrape(url);
    expect(s.names.has('vmhostd_rpc_requests_total')).toBe(true);
    expect((await fetch(`${url}?x=1`)).status).toBe(200);
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const post = await fetch(url, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await fetch(`${url}/sub`)).status).toBe(404);
  });

  it('counts requests by method and code through the dispatcher hook; clients by transport; refusals at the connection cap', async () => {
    const before = await scrape(url);
    const c = await TestClient.connect(server.url());
    await c.call('Host.ping');
    await c.call('Echo.add', { a: 1, b: 2 });
    await c.call('Echo.add', { a: 'x' });
    await c.call('No.such');
    await c.call('Test.fail', { kind: 'rpc' });
    c.ws.send('{not json');
    await c.nextOther();
    let s = await scrape(url);
    const moved = (labels: Record<string, string>) =>
      s.value('vmhostd_rpc_requests_total', labels) - before.value('vmhostd_rpc_requests_total', labels);
    expect(moved({ method: 'Host.ping', code: '0' })).toBe(1);
    expect(moved({ method: 'Echo.add', code: '0' })).toBe(1);
    expect(moved({ method: 'Echo.add', code: '-32602' })).toBe(1);
    expect(moved({ method: 'Test.fail', code: '85' })).toBe(1);
    expect(moved({ method: '-', code: '-32601' })).toBe(1);
    expect(moved({ method: '-', code: '-32700' })).toBe(1);
    // The unknown method's name never becomes a label value.
    expect(s.series('vmhostd_rpc_requests_total').map((l) => l.method)).not.toContain('No.such');
    expect(s.value('vmhostd_clients', { transport: 'ws' })).toBe(1);

    // maxConnections is 1: the second client is refused and counted.
    await expect(TestClient.connect(server.url())).rejects.toThrow(/503/);
    s = await scrape(url);
    expect(s.value('vmhostd_connections_refused_total', { reason: 'limits' })).toBe(1);
    await c.close();
    await waitFor('the client to be gone', () => server.connectionCount() === 0);
    expect((await scrape(url)).value('vmhostd_clients', { transport: 'ws' })).toBe(0);
  });

  it('counts requests refused for their Origin (origin)', async () => {
    const before = (await scrape(url)).value('vmhostd_connections_refused_total', { reason: 'origin' });
    const status = await new Promise<number>((resolvePromise, reject) => {
      const req = httpRequest(url, { headers: { Origin: 'http://evil.example' } }, (res) => {
        res.resume();
        resolvePromise(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
    const s = await scrape(url);
    expect(s.value('vmhostd_connections_refused_total', { reason: 'origin' })).toBe(before + 1);
  });

  it('counts sockets dropped for sending nothing in time (timeout)', async () => {
    const m = new DaemonMetrics({ version: 't' });
    const s2 = await serve(m, logs, { logger: logs.logger, limits: { firstByteTimeoutMs: 100 } });
    const sock = netConnect(s2.address().port, '127.0.0.1');
    await new Promise((r) => sock.once('close', r));
    const s = await Scrape.parse(await m.render());
    expect(s.value('vmhostd_connections_refused_total', { reason: 'timeout' })).toBe(1);
    await s2.close({ drainMs: 100 });
  });

  it('a failing collector answers 500 and logs, the listener goes on', async () => {
    const broken = {
      contentType: 'text/plain',
      render: () => Promise.reject(new Error('boom')),
    };
    const s2 = await startServer({ logger: logs.logger, routes: [metricsRoute(broken, logs.logger)] });
    const u = metricsUrlOf(s2.url());
    expect((await fetch(u)).status).toBe(500);
    await logs.waitFor((l) => l.msg === 'metrics: collecting failed');
    const c = await TestClient.connect(s2.url());
    expect((await c.call('Host.ping')).result).toBe(true);
    await c.close();
    await s2.close({ drainMs: 100 });
  });
});

describe('/metrics under mutual TLS', () => {
  let dir: string;
  const pki = (name: string) => join(dir, 'lab', name);
  const logs = new LogCapture();
  const metrics = new DaemonMetrics({ version: 't' });
  let server: RpcServer;
  let port: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmhostd-metrics-pki-'));
    execFileSync('sh', [PKI_SCRIPT, join(dir, 'lab'), 'vmhost-test.example'], { stdio: 'pipe' });
    server = await serve(metrics, logs, {
      logger: logs.logger,
      tls: {
        cert: pki('server.pem'),
        key: pki('server-key.pem'),
        ca: pki('ca.pem'),
        requireClientCert: true,
      },
    });
    port = server.address().port;
  });
  afterAll(async () => {
    await server.close({ drainMs: 100 });
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (opts: { cert?: boolean }) =>
    httpsGet(`https://127.0.0.1:${port}/metrics`, {
      servername: 'localhost',
      ca: readFileSync(pki('ca.pem')),
      ...(opts.cert
        ? { cert: readFileSync(pki('client.pem')), key: readFileSync(pki('client-key.pem')) }
        : {}),
    });

  it('a scraper without a client certificate gets nothing, and the refusal is counted (tls)', async () => {
    // Refused with a 403 that names why, before any route sees the request.
    expect(await get({ cert: false })).toMatchObject({
      status: 403,
      body: expect.stringMatching(/^client certificate refused/),
    });
    await logs.waitFor((l) => l.msg === 'client certificate refused');
    await waitFor('the refusal to be counted', async () => {
      const s = await Scrape.parse(await metrics.render());
      return s.value('vmhostd_connections_refused_total', { reason: 'tls' }) >= 1;
    });
  });

  it('a scraper with a certificate of the CA gets the exposition', async () => {
    const r = await get({ cert: true });
    expect(r.status).toBe(200);
    const s = await Scrape.parse(r.body);
    expect(s.names.has('vmhostd_libvirt_up')).toBe(true);
  });
});

describe('metrics.listen: the plain loopback listener', () => {
  const logs = new LogCapture();

  it('serves only /metrics', async () => {
    const metrics = new DaemonMetrics({ version: 't' });
    const l = await startMetricsListener('127.0.0.1', 0, metrics, logs.logger);
    try {
      expect(l.url()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      expect((await scrape(l.url())).names.has('vmhostd_build_info')).toBe(true);
      expect((await fetch(l.url().replace('/metrics', '/jsonrpc'))).status).toBe(404);
      expect((await fetch(l.url().replace('/metrics', '/'))).status).toBe(404);
      expect((await fetch(`${l.url()}/x`)).status).toBe(404);
    } finally {
      await l.close();
    }
  });

  it('refuses a non-loopback address (plain HTTP)', async () => {
    const metrics = new DaemonMetrics({ version: 't' });
    await expect(startMetricsListener('0.0.0.0', 0, metrics, logs.logger)).rejects.toThrow(/loopback/);
  });

  it('config: metrics.listen is HOST:PORT on loopback or empty; per_vm is a boolean', () => {
    const NO_DEFAULT = { defaultConfigPath: '/nonexistent/vmhostd.toml' };
    expect(loadConfig([], {}, NO_DEFAULT).metrics).toEqual({ listen: null, perVm: false });
    expect(loadConfig(['--metrics-listen', '127.0.0.1:9180'], {}, NO_DEFAULT).metrics.listen).toEqual({
      host: '127.0.0.1',
      port: 9180,
    });
    expect(loadConfig(['--metrics-listen', '[::1]:0'], {}, NO_DEFAULT).metrics.listen).toEqual({
      host: '::1',
      port: 0,
    });
    const err = (argv: string[]) => {
      try {
        loadConfig(argv, {}, NO_DEFAULT);
      } catch (e) {
        if (e instanceof ConfigError) return e.message;
        throw e;
      }
      throw new Error('expected a ConfigError');
    };
    expect(err(['--metrics-listen', '0.0.0.0:9180'])).toMatch(/^config: metrics\.listen: .*not a loopback/);
    expect(err(['--metrics-listen', 'localhost'])).toMatch(/^config: metrics\.listen: must be HOST:PORT/);
    expect(err(['--metrics-listen', '127.0.0.1:99999'])).toMatch(
      /^config: metrics\.listen: must be an integer/,
    );
  });
});
