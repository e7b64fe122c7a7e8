import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parse } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  ConfigInfoRequest,
  helpText,
  isLoopbackHost,
  loadConfig,
  packageRoot,
  resolveLibvirtSocket,
} from '../../src/config/config.js';
import { KEYS } from '../../src/config/keys.js';
import { isLoopbackHost as listenerIsLoopbackHost } from '../../src/rpc/listen-policy.js';
import { startServer } from './rpc/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'vmhostd-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const NO_DEFAULT = { defaultConfigPath: join(dir, 'absent.toml') };

let n = 0;
function file(text: string): string {
  const p = join(dir, `c${n++}.toml`);
  writeFileSync(p, text);
  return p;
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig defaults', () => {
  it('gives the documented defaults without file or flags', () => {
    const c = loadConfig([], {}, NO_DEFAULT);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 54321, allowedOrigins: [], allowedHosts: [] });
    expect(c.tls).toBeNull();
    expect(c.allowInsecure).toBe(false);
    expect(c.libvirt).toEqual({
      uri: 'qemu:///system',
      socket: '',
      domainPrefix: '',
      callTimeoutS: 60,
      keepaliveIntervalS: 5,
      keepaliveCount: 5,
    });
    expect(c.unplugTimeoutS).toBe(30);
    expect(c.dimmAlignmentMiB).toBe(128);
    expect(c.log).toEqual({ level: 'info', pretty: false });
    expect(c.events).toEqual({ maxEntries: 10_000, maxAgeS: 86_400 });
    expect(c.limits).toEqual({
      maxPayloadBytes: 1048576,
      maxConnections: 1024,
      maxInFlightPerConnection: 64,
      handshakeTimeoutS: 5,
      firstByteTimeoutS: 2,
      maxPendingConnections: 256,
      maxPendingPerAddress: 16,
      maxBatchEntries: 64,
    });
    expect(c.console.enabled).toBe(true);
    expect(c.console.dir).toBe(join(packageRoot(), 'web'));
  });

  it('reads the default path when it exists', () => {
    const p = file('[listen]\nport = 6000\n');
    expect(loadConfig([], {}, { defaultConfigPath: p }).listen.port).toBe(6000);
  });

  it('the shipped config/vmhostd.toml documents every key with its default value', () => {
    const shipped = join(packageRoot(), 'config', 'vmhostd.toml');
    const doc = parse(readFileSync(shipped, 'utf8')) as Record<string, Record<string, unknown>>;
    for (const [key, spec] of Object.entries(KEYS)) {
      const [section, name] = key.split('.') as [string, string];
      expect(doc[section]?.[name], key).toEqual(spec.def);
    }
    // and loads to exactly the built-in defaults
    expect(loadConfig(['--config', shipped], {}, NO_DEFAULT)).toEqual(loadConfig([], {}, NO_DEFAULT));
  });
});

describe('file and flags', () => {
  it('flags override the file', () => {
    const p = file(
      '[listen]\nhost = "127.0.0.2"\nport = 6000\n[memory]\nunplug_timeout = 12\n[log]\nlevel = "debug"\n',
    );
    const c = loadConfig(
      [
        '--config',
        p,
        '--listen',
        '127.0.0.1:7000',
        '--unplug-timeout=8',
        '--log-level',
        'warn',
        '--log-pretty',
      ],
      {},
      NO_DEFAULT,
    );
    expect(c.listen).toMatchObject({ host: '127.0.0.1', port: 7000 });
    expect(c.unplugTimeoutS).toBe(8);
    expect(c.log).toEqual({ level: 'warn', pretty: true });
  });

  it('VMHOSTD_CONFIG names the file when --config is absent', () => {
    const p = file('[libvirt]\nuri = "qemu:///session"\nsocket = "/tmp/x.sock"\n');
    const c = loadConfig([], { VMHOSTD_CONFIG: p }, NO_DEFAULT);
    expect(c.libvirt.uri).toBe('qemu:///session');
    expect(c.libvirt.socket).toBe('/tmp/x.sock');
  });

  it('parses IPv6 listen addresses and libvirt flags', () => {
    const c = loadConfig(
      ['--listen', '[::1]:1234', '--libvirt-socket', '/run/x', '--libvirt-uri', 'qemu+unix:///system'],
      {},
      NO_DEFAULT,
    );
    expect(c.listen).toMatchObject({ host: '::1', port: 1234 });
    expect(loadConfig(['--listen', '127.0.0.1:0'], {}, NO_DEFAULT).listen.port).toBe(0);
    expect(c.libvirt.socket).toBe('/run/x');
    expect(c.libvirt.uri).toBe('qemu+unix:///system');
  });

  it('--no-console and --console-dir', () => {
    expect(loadConfig(['--no-console'], {}, NO_DEFAULT).console.enabled).toBe(false);
    expect(loadConfig(['--console-dir', dir], {}, NO_DEFAULT).console.dir).toBe(dir);
    expect(errorOf(() => loadConfig(['--console-dir', join(dir, 'nope')], {}, NO_DEFAULT)).key).toBe(
      'console.dir',
    );
  });

  it('--help and --version are info requests, not errors', () => {
    expect(() => loadConfig(['--help'], {}, NO_DEFAULT)).toThrow(ConfigInfoRequest);
    try {
      loadConfig(['--version'], {}, NO_DEFAULT);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigInfoRequest);
      expect((e as ConfigInfoRequest).text).toMatch(/^vmhostd \d+\.\d+\.\d+/);
    }
    for (const flag of ['--listen', '--unplug-timeout', '--tls-cert', '--no-console', '--allow-insecure']) {
      expect(helpText()).toContain(flag);
    }
  });
});

describe('errors name the key in one line', () => {
  const cases: [string, string, RegExp][] = [
    [
      '[listen]\nport = "abc"\n',
      'listen.port',
      /^config: listen\.port: must be an integer 1\.\.65535 \(got "abc"\)$/,
    ],
    ['[listen]\nport = 70000\n', 'listen.port', /must be an integer 1\.\.65535 \(got 70000\)/],
    ['[listen]\nport = 1.5\n', 'listen.port', /must be an integer/],
    ['[listen]\nhots = "x"\n', 'listen.hots', /unknown key/],
    ['[listn]\nhost = "x"\n', 'listn', /unknown key/],
    ['[log]\nlevel = "loud"\n', 'log.level', /must be one of fatal, error, warn, info, debug, trace/],
    ['[log]\npretty = "yes"\n', 'log.pretty', /must be true or false/],
    ['[memory]\nunplug_timeout = 0\n', 'memory.unplug_timeout', /must be a number 1\.\.86400 \(got 0\)/],
    ['[memory]\nunplug_timeout = [1]\n', 'memory.unplug_timeout', /got an array/],
    ['listen = 5\n', 'listen', /must be a table/],
    ['[limits]\nmax_payload_bytes = 10\n', 'limits.max_payload_bytes', /1024\.\./],
    ['[libvirt]\nuri = ""\n', 'libvirt.uri', /must not be empty/],
    ['[events]\nmax_entries = 10\n', 'events.max_entries', /must be an integer 100\.\./],
    ['[events]\nmax_age = 1\n', 'events.max_age', /must be a number 60\.\./],
  ];
  for (const [text, key, re] of cases) {
    it(`${key}: ${JSON.stringify(text)}`, () => {
      const e = errorOf(() => loadConfig(['--config', file(text)], {}, NO_DEFAULT));
      expect(e.key).toBe(key);
      expect(e.message).toMatch(re);
      expect(e.message).not.toContain('\n');
      expect(e.exitCode).toBe(2);
    });
  }

  it('TOML syntax errors name the file and the line', () => {
    const p = file('[listen]\nport = = 3\n');
    const e = errorOf(() => loadConfig(['--config', p], {}, NO_DEFAULT));
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/line 2/);
    expect(e.message).not.toContain('\n');
  });

  it('a missing --config file is an error', () => {
    const e = errorOf(() => loadConfig(['--config', join(dir, 'missing.toml')], {}, NO_DEFAULT));
    expect(e.message).toMatch(/cannot read config file \(ENOENT\)/);
  });

  it('bad flags name the flag', () => {
    expect(errorOf(() => loadConfig(['--listen', 'nope'], {}, NO_DEFAULT)).key).toBe('--listen');
    expect(errorOf(() => loadConfig(['--listen', '127.0.0.1:x'], {}, NO_DEFAULT)).message).toMatch(
      /--listen: must be an integer 1\.\.65535 \(got "x"\)/,
    );
    expect(errorOf(() => loadConfig(['--unplug-timeout', 'soon'], {}, NO_DEFAULT)).key).toBe(
      '--unplug-timeout',
    );
    expect(errorOf(() => loadConfig(['--log-level'], {}, NO_DEFAULT)).message).toMatch(/needs a value/);
    expect(errorOf(() => loadConfig(['--frobnicate'], {}, NO_DEFAULT)).message).toMatch(/unknown flag/);
    expect(errorOf(() => loadConfig(['--log-pretty=yes'], {}, NO_DEFAULT)).message).toMatch(/takes no value/);
  });
});

describe('TLS and exposure', () => {
  const pki = join(dir, 'pki');
  mkdirSync(pki, { recursive: true });
  for (const f of ['cert.pem', 'key.pem', 'ca.pem']) writeFileSync(join(pki, f), 'x');
  const cert = join(pki, 'cert.pem');
  const key = join(pki, 'key.pem');
  const ca = join(pki, 'ca.pem');

  it('plain ws on a non-loopback address is refused unless allow_insecure', () => {
    const e = errorOf(() => loadConfig(['--listen', '0.0.0.0:54321'], {}, NO_DEFAULT));
    expect(e.key).toBe('listen.host');
    expect(e.message).toMatch(/allow_insecure/);
    const c = loadConfig(['--listen', '0.0.0.0:54321', '--allow-insecure'], {}, NO_DEFAULT);
    expect(c.allowInsecure).toBe(true);
    expect(c.tls).toBeNull();
  });

  it('TLS with client certificates required by default', () => {
    const c = loadConfig(
      ['--listen', '0.0.0.0:54321', '--tls-cert', cert, '--tls-key', key, '--tls-ca', ca],
      {},
      NO_DEFAULT,
    );
    expect(c.tls).toEqual({ cert, key, ca, requireClientCert: true });
  });

  it('TLS from the file, client certs optional', () => {
    const p = file(`[tls]\ncert = "${cert}"\nkey = "${key}"\nrequire_client_cert = false\n`);
    expect(loadConfig(['--config', p], {}, NO_DEFAULT).tls).toEqual({ cert, key, requireClientCert: false });
    // the flag wins over the file
    expect(loadConfig(['--config', p, '--require-client-cert', '--tls-ca', ca], {}, NO_DEFAULT).tls).toEqual({
      cert,
      key,
      ca,
      requireClientCert: true,
    });
  });

  it('inconsistent TLS settings name the key', () => {
    expect(errorOf(() => loadConfig(['--tls-cert', cert], {}, NO_DEFAULT)).key).toBe('tls.key');
    expect(errorOf(() => loadConfig(['--tls-key', key], {}, NO_DEFAULT)).key).toBe('tls.cert');
    expect(errorOf(() => loadConfig(['--tls-cert', cert, '--tls-key', key], {}, NO_DEFAULT)).key).toBe(
      'tls.ca',
    );
    expect(errorOf(() => loadConfig(['--tls-ca', ca], {}, NO_DEFAULT)).key).toBe('tls.ca');
    const missing = errorOf(() =>
      loadConfig(['--tls-cert', join(pki, 'nope.pem'), '--tls-key', key, '--tls-ca', ca], {}, NO_DEFAULT),
    );
    expect(missing.key).toBe('tls.cert');
    expect(missing.message).toMatch(/ENOENT/);
  });
});

describe('helpers', () => {
  it('isLoopbackHost', () => {
    for (const h of [
      '127.0.0.1',
      '127.1.2.3',
      '::1',
      '[::1]',
      '0:0:0:0:0:0:0:1',
      '::ffff:127.0.0.1',
      'localhost',
    ])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '::2', '10.0.0.1', '::ffff:10.0.0.1', 'example.com', '128.0.0.1']) {
      expect(isLoopbackHost(h), h).toBe(false);
    }
  });

  it('the config check and the listener share one loopback rule', () => {
    expect(isLoopbackHost).toBe(listenerIsLoopbackHost);
  });

  it.each(['[::1]', '0:0:0:0:0:0:0:1', '::1', '127.0.0.2'])(
    'a plain listen.host %s that the config accepts is one the listener starts on',
    async (host) => {
      const c = loadConfig(['--config', file(`[listen]\nhost = "${host}"\nport = 0\n`)], {}, NO_DEFAULT);
      const server = await startServer({ logger: pino({ level: 'silent' }), host: c.listen.host, port: 0 });
      try {
        expect(server.address().port).toBeGreaterThan(0);
      } finally {
        await server.close({ drainMs: 10 });
      }
    },
  );

  it('resolveLibvirtSocket prefers virtqemud when present', () => {
    expect(resolveLibvirtSocket('/x')).toBe('/x');
    expect(resolveLibvirtSocket('', () => true)).toBe('/run/libvirt/virtqemud-sock');
    expect(resolveLibvirtSocket('', () => false)).toBe('/run/libvirt/libvirt-sock');
  });
});
