// TLS: mutual TLS with the lab PKI (scripts/make-lab-pki.sh), refusal of
// clients without a certificate or with a foreign one, TLS 1.1 refused, REST
// under the same rules, and the TLS handshake timeout.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RestApi } from '../../src/api/rest.js';
import type { RpcServer } from '../../src/rpc/server.js';
import { LogCapture, startServer, TestClient } from './rpc/helpers.js';

const SCRIPT = resolve(import.meta.dirname, '../../scripts/make-lab-pki.sh');

describe('rpc over TLS', () => {
  let dir: string;
  const pki = (name: string) => join(dir, 'lab', name);
  const rogue = (name: string) => join(dir, 'rogue', name);
  const logs = new LogCapture();
  let mtls: RpcServer;
  let port: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmhostd-pki-'));
    execFileSync('sh', [SCRIPT, join(dir, 'lab'), 'vmhost-test.example'], { stdio: 'pipe' });
    execFileSync('sh', [SCRIPT, join(dir, 'rogue')], { stdio: 'pipe' });
    mtls = await startServer({
      routes: [new RestApi()],
      logger: logs.logger,
      // Paths here; PEM text is tested below.
      tls: {
        cert: pki('server.pem'),
        key: pki('server-key.pem'),
        ca: pki('ca.pem'),
        requireClientCert: true,
      },
      limits: { handshakeTimeoutMs: 300 },
    });
    port = mtls.address().port;
  });
  afterAll(async () => {
    await mtls.close({ drainMs: 100 });
    rmSync(dir, { recursive: true, force: true });
  });

  const clientTls = () => ({
    ca: readFileSync(pki('ca.pem')),
    cert: readFileSync(pki('client.pem')),
    key: readFileSync(pki('client-key.pem')),
  });

  it('serves wss:// with mutual TLS using the lab PKI', async () => {
    expect(mtls.url()).toBe(`wss://127.0.0.1:${port}/jsonrpc`);
    const c = await TestClient.connect(mtls.url(), clientTls());
    expect((await c.call('Host.ping')).result).toBe(true);
    await logs.waitFor((l) => l.msg === 'client connected' && l.peer === 'vmhost-engine');
    // The server certificate also names localhost.
    const c2 = await TestClient.connect(`wss://localhost:${port}/jsonrpc`, clientTls());
    expect((await c2.call('Echo.add', { a: 1, b: 2 })).result).toBe(3);
    await c.close();
    await c2.close();
  });

  it('refuses a client without a certificate with 403 naming why, logged', async () => {
    await expect(TestClient.connect(mtls.url(), { ca: readFileSync(pki('ca.pem')) })).rejects.toThrow(
      'HTTP 403',
    );
    await logs.waitFor((l) => l.msg === 'client certificate refused' && l.code === 'NO_CLIENT_CERT');
    expect(mtls.connectionCount()).toBe(0);
  });

  it('refuses a client certificate from another CA', async () => {
    await expect(
      TestClient.connect(mtls.url(), {
        ca: readFileSync(pki('ca.pem')),
        cert: readFileSync(rogue('client.pem')),
        key: readFileSync(rogue('client-key.pem')),
      }),
    ).rejects.toThrow();
    expect(mtls.connectionCount()).toBe(0);
  });

  function handshake(opts: {
    minVersion: 'TLSv1' | 'TLSv1.2';
    maxVersion: 'TLSv1.1' | 'TLSv1.2';
  }): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = tlsConnect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ...clientTls(),
        ...opts,
        // Let this client offer old protocols at all; the server must be the one saying no.
        ciphers: 'DEFAULT@SECLEVEL=0',
      });
      s.once('secureConnect', () => {
        const v = s.getProtocol() ?? '';
        s.destroy();
        resolve(v);
      });
      s.once('error', reject);
    });
  }

  it('refuses TLS 1.1 (the server answers with a protocol_version alert); TLS 1.2 works', async () => {
    await expect(handshake({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1' })).rejects.toMatchObject({
      code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
    });
    expect(await handshake({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })).toBe('TLSv1.2');
  });

  function httpsPut(path: string, withCert: boolean): Promise<number> {
    return new Promise((resolve, reject) => {
      const tls = withCert ? clientTls() : { ca: readFileSync(pki('ca.pem')) };
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path,
          method: 'PUT',
          headers: { 'Content-Type': 'application/xml' },
          ...tls,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('<vm><memory>1</memory></vm>');
    });
  }

  it('REST shares the listener and its rules', async () => {
    // No VM.setMemory registered in this method set: the request gets through TLS and fails as 500.
    expect(await httpsPut('/api/vms/x', true)).toBe(500);
    // Without a client certificate: 403 before REST sees anything.
    expect(await httpsPut('/api/vms/x', false)).toBe(403);
  });

  it('a client that never completes the TLS handshake is cut off after handshakeTimeoutMs', async () => {
    const socket = netConnect(port, '127.0.0.1');
    socket.on('error', () => {});
    const t0 = Date.now();
    await new Promise<void>((r) => socket.once('close', () => r()));
    expect(Date.now() - t0).toBeLessThan(3000);
    await logs.waitFor((l) => l.msg === 'TLS handshake failed' && /timeout/i.test(String(l.err)));
  });

  it('accepts PEM text, and clients without certificates when they are not required', async () => {
    const s = await startServer({
      logger: new LogCapture().logger,
      tls: {
        cert: readFileSync(pki('server.pem'), 'utf8'),
        key: readFileSync(pki('server-key.pem'), 'utf8'),
        requireClientCert: false,
      },
    });
    try {
      const c = await TestClient.connect(s.url(), { ca: readFileSync(pki('ca.pem')) });
      expect((await c.call('Host.ping')).result).toBe(true);
      await c.close();
    } finally {
      await s.close({ drainMs: 100 });
    }
  });

  it('with TLS a non-loopback host is allowed without allowInsecure', async () => {
    const s = await startServer({
      logger: new LogCapture().logger,
      host: '0.0.0.0',
      tls: {
        cert: pki('server.pem'),
        key: pki('server-key.pem'),
        ca: pki('ca.pem'),
        requireClientCert: true,
      },
    });
    await s.close({ drainMs: 10 });
  });

  it('refuses to start when client certificates are required but no CA is given, or a file is missing', async () => {
    await expect(
      startServer({
        logger: new LogCapture().logger,
        tls: { cert: pki('server.pem'), key: pki('server-key.pem'), requireClientCert: true },
      }),
    ).rejects.toThrow(/tls\.ca is required/);
    await expect(
      startServer({
        logger: new LogCapture().logger,
        tls: {
          cert: join(dir, 'nope.pem'),
          key: pki('server-key.pem'),
          ca: pki('ca.pem'),
          requireClientCert: true,
        },
      }),
    ).rejects.toThrow(/tls\.cert: cannot read/);
  });
});
