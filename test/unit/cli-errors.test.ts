// vmhost-client's failures as the README promises them (issue 16 point 7):
// --json prints {"error":…} on stdout for every exit code, and TLS failures
// are named (unknown CA, expired, hostname mismatch, no client certificate,
// a server certificate used as a client's) instead of "socket hang up".
// Against the daemon's real RpcServer with mutual TLS from the lab PKI script.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import type { MethodSpec } from '../../src/rpc/method.js';
import { RpcServer } from '../../src/rpc/server.js';

const SCRIPT = resolve(import.meta.dirname, '../../scripts/make-lab-pki.sh');

function capture() {
  let out = '';
  let err = '';
  return {
    io: {
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: (s: string) => (err += s) },
    },
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
}

async function run(argv: string[]) {
  const c = capture();
  const code = await main(argv, {}, c.io);
  return { code, stdout: c.out, stderr: c.err };
}

const vmList: MethodSpec = {
  name: 'Host.getAllVmStats',
  summary: 'stub',
  params: { type: 'object', properties: {}, additionalProperties: false },
  result: {},
  readOnly: true,
  handler: async () => [],
};

describe('vmhost-client over mutual TLS: failures are named', () => {
  let dir: string;
  const lab = (f: string) => join(dir, 'lab', f);
  const rogue = (f: string) => join(dir, 'rogue', f);
  let servers: RpcServer[] = [];
  let url: string;
  let mismatchUrl: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmhostd-cli-pki-'));
    execFileSync('sh', [SCRIPT, join(dir, 'lab'), 'vmhost-test.example'], { stdio: 'pipe' });
    execFileSync('sh', [SCRIPT, join(dir, 'rogue')], { stdio: 'pipe' });
    // A client certificate from the lab CA that expired yesterday.
    writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
    execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'expired-key.pem'),
        '-subj',
        '/CN=expired',
        '-out',
        join(dir, 'expired.csr'),
      ],
      { stdio: 'pipe' },
    );
    execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        join(dir, 'expired.csr'),
        '-CA',
        lab('ca.pem'),
        '-CAkey',
        lab('ca-key.pem'),
        '-CAcreateserial',
        '-CAserial',
        join(dir, 'ca.srl'),
        '-days',
        '-1',
        '-extfile',
        join(dir, 'client.ext'),
        '-out',
        join(dir, 'expired.pem'),
      ],
      { stdio: 'pipe' },
    );
    const tls = {
      cert: lab('server.pem'),
      key: lab('server-key.pem'),
      ca: lab('ca.pem'),
      requireClientCert: true,
    };
    const base = {
      port: 0,
      methods: [vmList],
      logger: pino({ level: 'silent' }),
      apiVersion: 't',
      serverName: 't',
      tls,
    };
    const s = await RpcServer.start({ ...base, host: '127.0.0.1' });
    // 127.0.0.2 is not among the certificate's names.
    const m = await RpcServer.start({ ...base, host: '127.0.0.2' });
    servers = [s, m];
    url = `wss://127.0.0.1:${s.address().port}/jsonrpc`;
    mismatchUrl = `wss://127.0.0.2:${m.address().port}/jsonrpc`;
  });
  afterAll(async () => {
    for (const s of servers) await s.close({ drainMs: 50 });
    rmSync(dir, { recursive: true, force: true });
  });

  const withCert = (cert: string, key: string, u = url) => [
    '--url',
    u,
    '--tls-ca',
    lab('ca.pem'),
    '--tls-cert',
    cert,
    '--tls-key',
    key,
  ];

  it('works with the right certificate (the baseline)', async () => {
    const r = await run([...withCert(lab('client.pem'), lab('client-key.pem')), '--json', 'vm', 'list']);
    expect(r.code).toBe(0);
  });

  it.each([
    [
      'a client certificate from another CA',
      () => withCert(rogue('client.pem'), rogue('client-key.pem')),
      /refused the client certificate: .*signed by a CA the daemon does not trust/,
    ],
    [
      'an expired client certificate',
      () => withCert(join(dir, 'expired.pem'), join(dir, 'expired-key.pem')),
      /refused the client certificate: .*has expired/,
    ],
    [
      'the server certificate used as a client one',
      () => withCert(lab('server.pem'), lab('server-key.pem')),
      /refused the client certificate: .*not for TLS clients/,
    ],
    ['no client certificate', () => ['--url', url, '--tls-ca', lab('ca.pem')], /no client certificate/],
    [
      'an unknown CA for the daemon',
      () => ['--url', url, '--tls-cert', lab('client.pem'), '--tls-key', lab('client-key.pem')],
      /unknown CA/,
    ],
    [
      'a hostname mismatch',
      () => withCert(lab('client.pem'), lab('client-key.pem'), mismatchUrl),
      /hostname mismatch/,
    ],
  ])('%s: exit 3 with the reason on stderr and {"error":…} on stdout', async (_what, args, reason) => {
    const r = await run([...args(), '--json', 'vm', 'list']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(reason);
    expect(r.stderr).not.toMatch(/socket hang up/);
    expect(JSON.parse(r.stdout)).toMatchObject({
      error: { kind: 'connect', message: expect.stringMatching(reason) },
    });
  });
});

describe('vmhost-client --json prints {"error":…} for every failure', () => {
  it('usage errors (exit 2), even before the options are parsed', async () => {
    for (const argv of [
      ['--json', 'vm', 'frobnicate'],
      ['vm', 'plug', 'x', '1.5MB', '--json'],
    ]) {
      const r = await run(argv);
      expect(r.code).toBe(2);
      expect(JSON.parse(r.stdout)).toMatchObject({ error: { kind: 'usage', message: expect.any(String) } });
    }
  });

  it('connection refused (exit 3)', async () => {
    const r = await run(['--url', 'ws://127.0.0.1:1/jsonrpc', '--json', 'vm', 'list']);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({
      error: { kind: 'connect', message: expect.stringMatching(/refused/) },
    });
  });
});
