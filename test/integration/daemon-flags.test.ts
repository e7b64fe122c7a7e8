// The daemon's command line: --help lists the flags, and a bad flag or config
// key stops it at once with one line naming the key and exit code 2.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runDaemonOnce } from '../helpers/daemon.js';

describe('vmhostd command line', () => {
  it('--help lists every documented flag and exits 0', async () => {
    const r = await runDaemonOnce(['--help']);
    expect(r.code).toBe(0);
    for (const flag of [
      '--config',
      '--listen',
      '--libvirt-socket',
      '--libvirt-uri',
      '--unplug-timeout',
      '--log-level',
    ]) {
      expect(r.stdout).toContain(flag);
    }
  });

  it.each([['--version'], ['-V'], ['-h']])(
    '%s (advertised in --help) prints one answer and exits 0',
    async (flag) => {
      const help = await runDaemonOnce(['--help']);
      expect(help.stdout).toContain(flag);
      const r = await runDaemonOnce([flag]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      if (flag === '-h') expect(r.stdout).toBe(help.stdout);
      else expect(r.stdout).toMatch(/^vmhostd \d+\.\d+\.\d+\n$/);
    },
  );

  it.each([
    [['--listen', '127.0.0.1:abc'], /listen/],
    [['--unplug-timeout', '-3'], /unplug/],
    [['--log-level', 'chatty'], /log/],
    [['--frobnicate'], /frobnicate/],
  ])('refuses %j with one line naming it, exit 2', async (args, name) => {
    const r = await runDaemonOnce(args);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(name);
    expect(r.stdout).toBe('');
  });

  it('refuses a config file with an unknown key or a wrong type, naming the key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmhostd-cfg-'));
    const bad = join(dir, 'bad.toml');
    writeFileSync(bad, '[memory]\nunplug_timeout = "soon"\n');
    const r1 = await runDaemonOnce(['--config', bad]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toMatch(/memory\.unplug_timeout/);
    writeFileSync(bad, '[listen]\nprot = 1\n');
    const r2 = await runDaemonOnce(['--config', bad]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/listen\.prot/);
  });

  it('refuses plain WebSocket on a non-loopback address unless allowed', async () => {
    const r = await runDaemonOnce(['--listen', '0.0.0.0:54399']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/allow_insecure|allow-insecure|TLS/i);
  });
});
