// vmhost-client as an operator runs it (a separate process, not a TTY) against
// the real daemon, a real libvirtd and real TCG guests: output, --json and exit
// codes of list/show/plug/unplug/set-memory/events and the failure paths.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { type Guest, hostReady, startGuest } from '../helpers/guest.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const entry = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const KiB_PER_MiB = 1024;

interface Run {
  code: number | null;
  out: string;
  err: string;
}

function spawnCli(args: string[], url: string): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
    cwd: root,
    env: { ...process.env, VMHOSTD_URL: url },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function collect(proc: ChildProcess): Promise<Run> {
  return new Promise((resolve) => {
    let out = '';
    let err = '';
    proc.stdout?.on('data', (c) => {
      out += c;
    });
    proc.stderr?.on('data', (c) => {
      err += c;
    });
    proc.once('close', (code) => resolve({ code, out, err }));
  });
}

describe('vmhost-client against the real daemon', () => {
  let coop: Guest;
  let rej: Guest;
  let daemon: DaemonProcess;
  const cli = (...args: string[]): Promise<Run> => collect(spawnCli(args, daemon.url));

  beforeAll(async () => {
    await hostReady();
    [coop, rej] = await Promise.all([
      startGuest({ kind: 'cooperative', namePrefix: 'cli-coop', persistent: true }),
      startGuest({ kind: 'rejecting', namePrefix: 'cli-rej' }),
    ]);
    daemon = await startDaemon({ domainPrefix: 'vmhostd-test-cli-' });
  });
  afterAll(async () => {
    await daemon?.stop();
    await coop?.destroy();
    await rej?.destroy();
  });

  it('vm list: a table with the guests, and --json that parses', async () => {
    const r = await cli('vm', 'list');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^NAME\s+UUID\s+STATUS\s+MEMORY\s+GUARANTEED\s+DIMMS$/m);
    expect(r.out).toMatch(
      new RegExp(`^${coop.name}\\s+${coop.uuid}\\s+Up\\s+512 MiB\\s+\\d+ MiB\\s+0$`, 'm'),
    );
    const j = await cli('--json', 'vm', 'list');
    expect(j.code).toBe(0);
    const list = JSON.parse(j.out) as { vmId: string; vmName: string }[];
    expect(list.find((v) => v.vmId === coop.uuid)?.vmName).toBe(coop.name);
  });

  it('plug, show, unplug by VM name; the guest sees the memory come and go', async () => {
    const mem0 = await coop.memTotalKiB();
    const plug = await cli('vm', 'plug', coop.name, '128MiB');
    expect(plug.err).toBe('');
    expect(plug.code).toBe(0);
    const m =
      /^Plugged DIMM (ua-[\w-]+) \(128 MiB, node 0, slot \d+\) into (\S+): memory 512 MiB -> 640 MiB/.exec(
        plug.out,
      );
    expect(m, plug.out).not.toBeNull();
    const alias = m?.[1] ?? '';
    expect(m?.[2]).toBe(coop.name);
    await coop.waitForMemTotal((k) => k >= mem0 + 100 * KiB_PER_MiB, 60_000);

    const show = await cli('vm', 'show', coop.name);
    expect(show.code).toBe(0);
    expect(show.out).toMatch(/^Memory: +640 MiB$/m);
    // GUEST: this guest has no agent, so its zones are unknown.
    expect(show.out).toMatch(
      new RegExp(`^${alias}\\s+128 MiB\\s+0\\s+\\d+\\s+0x[0-9a-f]+\\s+plugged\\s+unknown$`, 'm'),
    );
    const showJson = JSON.parse((await cli('--json', 'vm', 'show', coop.uuid)).out) as {
      memoryDevices: { alias: string }[];
    };
    expect(showJson.memoryDevices.map((d) => d.alias)).toEqual([alias]);

    const un = await cli('vm', 'unplug', coop.name, alias, '--timeout', '30');
    expect(un.code).toBe(0);
    // Not a TTY: one plain progress line, no cursor control.
    expect(un.err).toBe(
      `waiting for the guest to release DIMM ${alias} (128 MiB) of ${coop.name}: 0 s, timeout 30 s\n`,
    );
    expect(un.out).toMatch(
      new RegExp(
        `^Removed DIMM ${alias} \\(128 MiB\\) from ${coop.name} in [\\d.]+ s: memory 640 MiB -> 512 MiB`,
      ),
    );
    await coop.waitForMemTotal((k) => k <= mem0 + 1024, 60_000);
    const after = await cli('vm', 'show', coop.name);
    expect(after.out).not.toContain(alias);
    expect(after.out).toContain('No memory devices (DIMMs).');
  });

  it('set-memory picks DIMMs per the planner and reports next-run', async () => {
    const mem0 = await coop.memTotalKiB();
    expect((await cli('vm', 'plug', coop.name, '256MiB')).code).toBe(0);
    expect((await cli('vm', 'plug', coop.name, '128MiB')).code).toBe(0);
    await coop.waitForMemTotal((k) => k >= mem0 + 350 * KiB_PER_MiB, 60_000);
    // 512 + 256 + 128 = 896; set 640: a decrement of 256 takes the 256 MiB DIMM only.
    const r = await cli('vm', 'set-memory', coop.name, '640MiB', '--timeout', '30');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/memory 896 MiB -> 640 MiB/);
    expect(r.out).toMatch(/unplugged: ua-[\w-]+ \(256 MiB\)\n/);
    expect(r.out).toMatch(/next run: memory 640 MiB/);
    const j = JSON.parse((await cli('--json', 'vm', 'show', coop.name)).out) as {
      memSize: number;
      memoryDevices: { size: number }[];
    };
    expect(j.memSize).toBe(640);
    expect(j.memoryDevices.map((d) => d.size)).toEqual([128]);
  });

  it('events follows notifications, one line each', async () => {
    const proc = spawnCli(['events', coop.name, '--count', '1', '--json'], daemon.url);
    const done = collect(proc);
    // The follower says so on stderr once it listens.
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('events never started following')), 30_000);
      let err = '';
      proc.stderr?.on('data', (c) => {
        err += c;
        if (err.includes('following vmhostd notifications')) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    expect((await cli('vm', 'plug', coop.name, '128MiB')).code).toBe(0);
    const r = await done;
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    const ev = JSON.parse(lines[0] ?? '') as { method: string };
    expect(ev.method).toMatch(new RegExp(`^\\|virt\\|\\w+\\|${coop.uuid}$`));
  });

  it('a rejecting guest: exit 1 with the reason and the movable-memory advice, well before the timeout', async () => {
    const plug = await cli('--json', 'vm', 'plug', rej.uuid, '128MiB');
    expect(plug.code).toBe(0);
    const alias =
      (JSON.parse(plug.out) as { memoryDevices: { alias: string }[] }).memoryDevices[0]?.alias ?? '';
    await rej.waitForConsole(/VMHOST-GUEST PINNED/, 90_000);
    const t0 = Date.now();
    const r = await cli('vm', 'unplug', rej.name, alias, '--timeout', '60');
    expect(r.code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(r.err).toMatch(/hot unplug failed: .*guest-rejected/);
    expect(r.err).toMatch(/memhp_default_state=online_movable/);
    const j = await cli('--json', 'vm', 'unplug', rej.name, alias, '--timeout', '60');
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out.trim().split('\n').at(-1) ?? '')).toMatchObject({
      error: { code: 85, data: { reason: 'guest-rejected' } },
    });
  });

  it('failures: unknown VM or DIMM exit 1, usage exit 2, unreachable daemon exit 3 in one line', async () => {
    const noVm = await cli('vm', 'show', 'no-such-vm-here');
    expect(noVm.code).toBe(1);
    expect(noVm.err).toMatch(/no VM named "no-such-vm-here"/);
    const noUuid = await cli('vm', 'show', '00000000-0000-4000-8000-000000000000');
    expect(noUuid.code).toBe(1);
    const noDimm = await cli('vm', 'unplug', coop.name, 'ua-nope');
    expect(noDimm.code).toBe(1);
    expect(noDimm.err).toMatch(/has no DIMM "ua-nope"/);
    const usage = await cli('vm', 'plug', coop.name, '128MB');
    expect(usage.code).toBe(2);
    const down = await collect(spawnCli(['vm', 'list'], 'ws://127.0.0.1:1/jsonrpc'));
    expect(down.code).toBe(3);
    expect(down.err.trimEnd().split('\n')).toHaveLength(1);
    expect(down.err).toMatch(/cannot connect to ws:\/\/127\.0\.0\.1:1\/jsonrpc: connection refused/);
  });

  it('raw calls print the JSON result', async () => {
    const r = await cli('VM', 'getStats', `vmID=${coop.uuid}`);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.out) as { vmId: string }[])[0]?.vmId).toBe(coop.uuid);
    const ping = await cli('Host', 'ping');
    expect(JSON.parse(ping.out)).toBe(true);
  });
});

describe('vmhost-client over mutual TLS', () => {
  const pki = mkdtempSync(join(tmpdir(), 'vmhost-cli-pki-'));
  let daemon: DaemonProcess;
  const run = (...args: string[]): Promise<Run> => collect(spawnCli(args, daemon.url));

  beforeAll(async () => {
    execFileSync('sh', [join(root, 'scripts/make-lab-pki.sh'), pki, 'localhost'], { stdio: 'ignore' });
    daemon = await startDaemon({
      domainPrefix: 'vmhostd-test-cli-',
      args: [
        ...['--tls-cert', join(pki, 'server.pem'), '--tls-key', join(pki, 'server-key.pem')],
        ...['--tls-ca', join(pki, 'ca.pem')],
      ],
    });
  });
  afterAll(async () => {
    await daemon?.stop();
    rmSync(pki, { recursive: true, force: true });
  });

  it('connects with the lab certificates; refuses clearly without them (exit 3, one line)', async () => {
    expect(daemon.url).toMatch(/^wss:\/\//);
    const ok = await run(
      '--tls-ca',
      join(pki, 'ca.pem'),
      '--tls-cert',
      join(pki, 'client.pem'),
      '--tls-key',
      join(pki, 'client-key.pem'),
      'Host',
      'ping',
    );
    expect(ok.err).toBe('');
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out)).toBe(true);
    const untrusted = await run('Host', 'ping');
    expect(untrusted.code).toBe(3);
    expect(untrusted.err).toMatch(/certificate is not trusted .*--tls-ca/);
    const noClientCert = await run('--tls-ca', join(pki, 'ca.pem'), 'Host', 'ping');
    expect(noClientCert.code).toBe(3);
    expect(noClientCert.err.trimEnd().split('\n')).toHaveLength(1);
    expect(noClientCert.err).toMatch(/requires a client certificate/);
  });
});
