// STOMP inside TLS on the same listener, under the same mutual-TLS rules as
// the WebSocket: a client certificate from the lab CA is required, STOMP
// bytes sent in the clear to the TLS port are not taken as STOMP.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RpcServer } from '../../src/rpc/server.js';
import { CONNECT, EngineStompClient, RawStomp } from '../helpers/stomp-client.js';
import { LogCapture, startServer, TestClient } from './rpc/helpers.js';

const SCRIPT = resolve(import.meta.dirname, '../../scripts/make-lab-pki.sh');

describe('STOMP over mutual TLS', () => {
  let dir: string;
  const pki = (name: string) => join(dir, 'lab', name);
  const logs = new LogCapture();
  let server: RpcServer;
  let port: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmhostd-stomp-pki-'));
    execFileSync('sh', [SCRIPT, join(dir, 'lab'), 'vmhost-test.example'], { stdio: 'pipe' });
    server = await startServer({
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

  const clientTls = () => ({
    ca: readFileSync(pki('ca.pem')),
    cert: readFileSync(pki('client.pem')),
    key: readFileSync(pki('client-key.pem')),
    servername: 'localhost',
  });

  it('serves STOMP and wss:// side by side with a lab client certificate, peer logged', async () => {
    const engine = await EngineStompClient.connect(port, { tls: clientTls() });
    expect((await engine.call('Echo.add', { a: 20, b: 22 })).result).toBe(42);
    await logs.waitFor(
      (l) => l.msg === 'client connected' && l.transport === 'stomp' && l.peer === 'vmhost-engine',
    );
    const ws = await TestClient.connect(server.url(), clientTls());
    expect((await ws.call('Host.ping')).result).toBe(true);
    await ws.close();
    await engine.close();
  });

  it('refuses a STOMP client without a certificate: no CONNECTED, nothing served', async () => {
    await expect(
      EngineStompClient.connect(port, { tls: { ca: readFileSync(pki('ca.pem')), servername: 'localhost' } }),
    ).rejects.toThrow();
    const raw = await RawStomp.connect(port, { ca: readFileSync(pki('ca.pem')), servername: 'localhost' });
    raw.send(
      `${CONNECT()}SEND\ndestination:jms.topic.vdsm_requests\n\n{"jsonrpc":"2.0","id":1,"method":"Echo.add","params":{"a":1,"b":1}}\0`,
    );
    await raw.whenClosed();
    expect(raw.text).not.toContain('CONNECTED');
    expect(raw.text).not.toContain('MESSAGE');
    expect(server.connectionCount()).toBe(0);
  });

  it('does not take clear-text STOMP on the TLS port', async () => {
    const raw = await RawStomp.connect(port);
    raw.send(CONNECT());
    await raw.whenClosed();
    expect(raw.text).not.toContain('CONNECTED');
  });
});
