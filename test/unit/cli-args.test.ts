import { describe, expect, it } from 'vitest';
import { DEFAULT_URL, parseCli, parseRawValue } from '../../src/cli/args.js';
import { UsageError } from '../../src/cli/errors.js';
import { parseSizeBytes, parseSizeMiB } from '../../src/cli/size.js';

function usage(argv: string[]): string {
  try {
    parseCli(argv);
  } catch (e) {
    if (e instanceof UsageError) return e.message;
    throw e;
  }
  throw new Error(`expected a UsageError for ${argv.join(' ')}`);
}

const UUID = '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0';

describe('sizes', () => {
  it('accepts IEC units, case-insensitively, and decimals that land on whole bytes', () => {
    expect(parseSizeBytes('S', '256MiB')).toBe(256 * 2 ** 20);
    expect(parseSizeBytes('S', '256 mib')).toBe(256 * 2 ** 20);
    expect(parseSizeBytes('S', '1.5GiB')).toBe(1536 * 2 ** 20);
    expect(parseSizeBytes('S', '4KiB')).toBe(4096);
    expect(parseSizeBytes('S', '1TiB')).toBe(2 ** 40);
    expect(parseSizeBytes('S', '1468006400B')).toBe(1468006400);
  });

  it('a bare number is MiB', () => {
    expect(parseSizeBytes('S', '1400')).toBe(1400 * 2 ** 20);
    expect(parseSizeMiB('S', '256')).toBe(256);
  });

  it('refuses ambiguous or malformed sizes', () => {
    for (const bad of ['256MB', '1G', '1GB', '12 k', 'abc', '', '-5MiB', '1e3MiB', '0x10MiB', '1.2.3GiB']) {
      expect(() => parseSizeBytes('S', bad), bad).toThrow(UsageError);
    }
    expect(() => parseSizeBytes('S', '256MB')).toThrow(/write MiB/);
    expect(() => parseSizeBytes('S', '1.5B')).toThrow(/whole number of bytes/);
  });

  it('MiB sizes must be whole MiB', () => {
    expect(parseSizeMiB('S', '1GiB')).toBe(1024);
    expect(() => parseSizeMiB('S', '1000KiB')).toThrow(/whole number of MiB/);
    expect(() => parseSizeMiB('S', '1.3MiB')).toThrow(UsageError);
  });
});

describe('global options', () => {
  it('defaults to the local daemon and honours VMHOSTD_URL, --url wins', () => {
    expect(parseCli(['vm', 'list']).global.url).toBe(DEFAULT_URL);
    expect(parseCli(['vm', 'list'], { VMHOSTD_URL: 'ws://h:1/jsonrpc' }).global.url).toBe('ws://h:1/jsonrpc');
    expect(
      parseCli(['--url', 'wss://h:2/jsonrpc', 'vm', 'list'], { VMHOSTD_URL: 'ws://h:1/jsonrpc' }).global.url,
    ).toBe('wss://h:2/jsonrpc');
    expect(parseCli(['vm', 'list', '--url=ws://x:3/jsonrpc']).global.url).toBe('ws://x:3/jsonrpc');
  });

  it('TLS files and --json', () => {
    const p = parseCli([
      '--tls-cert',
      'c.pem',
      '--tls-key',
      'k.pem',
      '--tls-ca',
      'ca.pem',
      '--json',
      'vm',
      'list',
    ]);
    expect(p.global).toMatchObject({ tlsCert: 'c.pem', tlsKey: 'k.pem', tlsCa: 'ca.pem', json: true });
    expect(usage(['--tls-cert', 'c.pem', 'vm', 'list'])).toMatch(/go together/);
  });

  it('help and version need no command', () => {
    expect(parseCli(['--help']).command).toEqual({ kind: 'help' });
    expect(parseCli(['-h']).command).toEqual({ kind: 'help' });
    expect(parseCli(['help']).command).toEqual({ kind: 'help' });
    expect(parseCli(['--version']).command).toEqual({ kind: 'version' });
  });

  it('usage errors', () => {
    expect(usage([])).toMatch(/no command/);
    expect(usage(['--bogus', 'vm', 'list'])).toMatch(/unknown option "--bogus"/);
    expect(usage(['--url', 'http://x/', 'vm', 'list'])).toMatch(/--url/);
    expect(usage(['vm', 'list', '--url'])).toMatch(/needs a value/);
    expect(usage(['--json=yes', 'vm', 'list'])).toMatch(/takes no value/);
    expect(usage(['vm', 'list', '--json', '--json'])).toMatch(/given twice/);
  });
});

describe('friendly verbs', () => {
  it('vm list / show / devices', () => {
    expect(parseCli(['vm', 'list']).command).toEqual({ kind: 'vm-list' });
    expect(parseCli(['vm', 'show', 'demo']).command).toEqual({ kind: 'vm-show', vm: 'demo' });
    expect(parseCli(['vm', 'devices', UUID]).command).toEqual({ kind: 'vm-show', vm: UUID });
    expect(usage(['vm', 'list', 'extra'])).toMatch(/usage: vmhost-client vm list/);
    expect(usage(['vm', 'show'])).toMatch(/vm show VM/);
    expect(usage(['vm', 'frob'])).toMatch(/unknown command "vm frob"/);
  });

  it('vm plug', () => {
    expect(parseCli(['vm', 'plug', 'demo', '256MiB']).command).toEqual({
      kind: 'vm-plug',
      vm: 'demo',
      sizeMiB: 256,
      node: 0,
    });
    expect(
      parseCli(['vm', 'plug', 'demo', '1GiB', '--node', '1', '--alias', 'ua-x', '--guaranteed', '512'])
        .command,
    ).toEqual({ kind: 'vm-plug', vm: 'demo', sizeMiB: 1024, node: 1, alias: 'ua-x', guaranteedMiB: 512 });
    expect(usage(['vm', 'plug', 'demo', '0MiB'])).toMatch(/more than 0/);
    expect(usage(['vm', 'plug', 'demo', '256MiB', '--node', 'x'])).toMatch(
      /--node: must be an integer 0\.\.63/,
    );
    expect(usage(['vm', 'plug', 'demo', '256MiB', '--timeout', '5'])).toMatch(/--timeout does not apply/);
    expect(usage(['vm', 'plug', 'demo'])).toMatch(/vm plug VM SIZE/);
  });

  it('vm unplug', () => {
    expect(parseCli(['vm', 'unplug', 'demo', 'ua-1']).command).toEqual({
      kind: 'vm-unplug',
      vm: 'demo',
      alias: 'ua-1',
    });
    expect(parseCli(['vm', 'unplug', 'demo', 'ua-1', '--timeout', '8']).command).toMatchObject({
      timeoutS: 8,
    });
    expect(parseCli(['vm', 'unplug', 'demo', 'ua-1', '--timeout=2.5s']).command).toMatchObject({
      timeoutS: 2.5,
    });
    expect(usage(['vm', 'unplug', 'demo', 'ua-1', '--timeout', '0'])).toMatch(/--timeout/);
    expect(usage(['vm', 'unplug', 'demo', 'ua-1', '--timeout', 'soon'])).toMatch(/--timeout/);
    expect(usage(['vm', 'unplug', 'demo'])).toMatch(/vm unplug VM ALIAS/);
    expect(parseCli(['vm', 'unplug', 'demo', 'ua-1', '--force']).command).toEqual({
      kind: 'vm-unplug',
      vm: 'demo',
      alias: 'ua-1',
      force: true,
    });
    expect(parseCli(['vm', 'set-memory', 'demo', '1GiB', '--force']).command).toMatchObject({ force: true });
    expect(usage(['vm', 'plug', 'demo', '128MiB', '--force'])).toMatch(/--force/);
  });

  it('vm set-memory takes sizes in bytes for the API', () => {
    expect(parseCli(['vm', 'set-memory', 'demo', '1400MiB', '--guaranteed', '900MiB']).command).toEqual({
      kind: 'vm-set-memory',
      vm: 'demo',
      memoryBytes: 1400 * 2 ** 20,
      guaranteedBytes: 900 * 2 ** 20,
    });
    expect(parseCli(['vm', 'set-memory', 'demo', '1468006400B', '--timeout', '10']).command).toEqual({
      kind: 'vm-set-memory',
      vm: 'demo',
      memoryBytes: 1468006400,
      timeoutS: 10,
    });
    expect(usage(['vm', 'set-memory', 'demo', '100KiB'])).toMatch(/at least 1 MiB/);
  });

  it('events', () => {
    expect(parseCli(['events']).command).toEqual({ kind: 'events' });
    expect(parseCli(['events', 'demo', '--count', '3']).command).toEqual({
      kind: 'events',
      vm: 'demo',
      count: 3,
    });
    expect(usage(['events', '--count', '0'])).toMatch(/--count/);
  });
});

describe('raw calls', () => {
  it('NAMESPACE METHOD NAME=VALUE, JSON values parsed, others kept as strings', () => {
    expect(
      parseCli([
        'VM',
        'hotunplugMemory',
        `vmID=${UUID}`,
        `params={"vmId":"${UUID}","memory":{"size":128}}`,
        'timeout=8',
      ]).command,
    ).toEqual({
      kind: 'raw',
      method: 'VM.hotunplugMemory',
      params: { vmID: UUID, params: { vmId: UUID, memory: { size: 128 } }, timeout: 8 },
    });
    expect(parseCli(['Host', 'ping']).command).toEqual({ kind: 'raw', method: 'Host.ping', params: {} });
    expect(parseCli(['Host.getVMList']).command).toEqual({
      kind: 'raw',
      method: 'Host.getVMList',
      params: {},
    });
    expect(parseCli(['rpc', 'discover']).command).toEqual({
      kind: 'raw',
      method: 'rpc.discover',
      params: {},
    });
  });

  it('raw values', () => {
    expect(parseRawValue('true')).toBe(true);
    expect(parseRawValue('"quoted"')).toBe('quoted');
    expect(parseRawValue('12')).toBe(12);
    expect(parseRawValue('ua-12')).toBe('ua-12');
    expect(parseRawValue('{broken')).toBe('{broken');
  });

  it('raw usage errors', () => {
    expect(usage(['Host'])).toMatch(/needs a method/);
    expect(usage(['Host', 'x=1'])).toMatch(/needs a method/);
    expect(usage(['VM', 'getStats', 'vmID'])).toMatch(/NAME=VALUE/);
    expect(usage(['VM', 'getStats', 'a=1', 'a=2'])).toMatch(/given twice/);
    expect(usage(['VM', 'getStats', '__proto__={}'])).toMatch(/not a valid parameter name/);
    expect(usage(['VM', 'get<x>'])).toMatch(/not a method name/);
  });
});
