// The shipped unit under a real systemd: systemd-nspawn boots the Debian test
// guest's root file system (systemd 252) with the host's libvirt socket, node
// and this checkout bound in; inside it, scripts/install.sh installs vmhostd
// and systemd runs it under the hardened unit. The daemon shares the host's
// network, so the test talks to it and to a real guest from out here.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stats, UnplugResult } from '../helpers/api-types.js';
import { DEBIAN_DIR, debianGuestReady } from '../helpers/debian-guest.js';
import { CONSOLE_DIR, type Guest, startGuest } from '../helpers/guest.js';
import { TestRpcClient as Client } from '../helpers/rpc-client.js';
import { waitFor } from '../helpers/wait.js';

const run = promisify(execFile);
const REPO = join(import.meta.dirname, '../..');
const ROOTFS = join(DEBIAN_DIR, 'rootfs');
const PREFIX = `vmhostd-test-nsp${randomBytes(2).toString('hex')}-`;
// What commands inside see: no test-runner environment, the host's trust store for npm.
const ENV = [
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'HOME=/root',
  'NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt',
];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

describe('vmhostd.service under a real systemd (systemd-nspawn)', () => {
  let nspawn: ChildProcess;
  let leader = 0;
  let port = 0;
  let guest: Guest;
  const url = () => `ws://127.0.0.1:${port}/jsonrpc`;
  const logPath = join(CONSOLE_DIR, `${PREFIX}nspawn.log`);

  /** Runs a shell script in the container (all its namespaces); resolves with exit code and output. */
  async function inside(script: string, timeoutMs = 120_000): Promise<{ code: number; out: string }> {
    try {
      const r = await run(
        'nsenter',
        [
          '-t',
          String(leader),
          '-m',
          '-u',
          '-i',
          '-n',
          '-p',
          '--',
          '/usr/bin/env',
          '-i',
          ...ENV,
          '/bin/bash',
          '-c',
          script,
        ],
        { timeout: timeoutMs, maxBuffer: 16 << 20 },
      );
      return { code: 0, out: r.stdout + r.stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof err.code === 'number' ? err.code : -1,
        out: `${err.stdout ?? ''}${err.stderr ?? ''}`,
      };
    }
  }
  async function insideOk(script: string, timeoutMs?: number): Promise<string> {
    const r = await inside(script, timeoutMs);
    if (r.code !== 0) throw new Error(`in the container, ${script} exited ${r.code}:\n${r.out}`);
    return r.out;
  }
  const show = async (prop: string) => (await insideOk(`systemctl show -p ${prop} --value vmhostd`)).trim();

  beforeAll(async () => {
    await debianGuestReady();
    if (!existsSync(join(REPO, 'dist/daemon.js'))) throw new Error('dist/ missing: run npm run build first');
    port = await freePort();
    const log = openSync(logPath, 'w');
    // --volatile=overlay: the cached root file system stays untouched (writes go to a tmpfs).
    nspawn = spawn(
      'systemd-nspawn',
      [
        '--quiet',
        '--boot',
        '--register=no',
        '--keep-unit',
        '--volatile=overlay',
        `--machine=${PREFIX}ct`.slice(0, 64),
        '--console=passive',
        `--directory=${ROOTFS}`,
        '--bind=/run/libvirt',
        '--bind-ro=/usr/bin/node',
        '--bind-ro=/usr/lib/node_modules',
        '--bind-ro=/etc/ssl/certs',
        `--bind-ro=${REPO}:/src`,
      ],
      { stdio: ['ignore', log, log] },
    );
    const pid = nspawn.pid ?? 0;
    // The container's PID 1 (systemd) is the nspawn process's child.
    leader = await waitFor(
      'the container to start',
      () => {
        for (const d of readdirSync('/proc')) {
          if (!/^\d+$/.test(d)) continue;
          const stat = (() => {
            try {
              return readFileSync(`/proc/${d}/stat`, 'utf8');
            } catch {
              return '';
            }
          })();
          const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
          // (its outer child, forked first, exits: wait for the one that became systemd)
          if (ppid === pid && stat.includes('(systemd)')) return Number(d);
        }
        if (nspawn.exitCode !== null) throw new Error(`systemd-nspawn exited ${nspawn.exitCode}`);
        return undefined;
      },
      30_000,
      50,
    );
    // "offline" until the container's systemd listens; then --wait waits for the boot to finish.
    const state = await waitFor(
      'the container to finish booting',
      async () => {
        const r = (await inside('systemctl is-system-running --wait', 60_000)).out.trim();
        return /^(running|degraded)$/.test(r) ? r : undefined;
      },
      60_000,
      200,
    );
    expect(state).toMatch(/^(running|degraded)$/);
    // npm for install.sh: the host's, bound in.
    await insideOk('ln -sf /usr/lib/node_modules/npm/bin/npm-cli.js /usr/bin/npm');
  });

  afterAll(async () => {
    await guest?.destroy();
    if (nspawn && nspawn.exitCode === null) {
      // SIGTERM: nspawn asks the container's systemd to power off.
      const exited = new Promise((r) => nspawn.once('exit', r));
      nspawn.kill('SIGTERM');
      const t = setTimeout(() => nspawn.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
    }
    if (!process.env.VMHOST_KEEP_CONSOLE) rmSync(logPath, { force: true });
  });

  it('scripts/install.sh installs; systemctl start returns once the daemon serves', async () => {
    const out = await insideOk('bash /src/scripts/install.sh', 300_000);
    expect(out).toMatch(/installed \/etc\/systemd\/system\/vmhostd\.service/);
    await insideOk(
      `sed -i -e 's/^port = .*/port = ${port}/' -e 's/^domain_prefix = .*/domain_prefix = "${PREFIX}"/' /etc/vmhostd/vmhostd.toml`,
    );
    await insideOk('systemctl start vmhostd');
    // No retry: the unit is active only once the listener accepts.
    const c = await Client.connect(url());
    expect(await c.call('Host.ping')).toBe(true);
    await c.close();
    expect(await show('ActiveState')).toBe('active');
  });

  it("a real guest's DIMM is plugged and unplugged through the daemon under the hardened unit", async () => {
    guest = await startGuest({ kind: 'cooperative', namePrefix: PREFIX.replace(/^vmhostd-test-|-$/g, '') });
    expect(guest.name.startsWith(PREFIX)).toBe(true);
    const c = await Client.connect(url());
    const vmId = guest.uuid;
    const memTotal0 = await guest.memTotalKiB();
    const plugged = await c.call<Stats>('VM.hotplugMemory', {
      vmID: vmId,
      params: { vmId, memory: { size: 128, node: 0 } },
    });
    const dimm = plugged.memoryDevices[0];
    expect(dimm).toBeDefined();
    await guest.waitForMemTotal((k) => k === memTotal0 + 128 * 1024, 60_000);
    const res = await c.call<UnplugResult>('VM.hotunplugMemory', {
      vmID: vmId,
      params: { vmId, memory: { size: 128, node: 0, alias: dimm?.alias } },
    });
    expect(res).toMatchObject({ status: 'removed', alias: dimm?.alias });
    await guest.waitForMemTotal((k) => k === memTotal0, 60_000);
    await c.close();
    // The unit's sandbox held: the daemon runs with no capabilities and a read-only root (ProtectSystem=strict).
    const pid = await show('MainPID');
    expect(await insideOk(`grep ^CapEff /proc/${pid}/status`)).toMatch(/CapEff:\s+0+\s*$/);
    expect((await insideOk(`awk '$5 == "/" { print $6 }' /proc/${pid}/mountinfo`)).trim()).toMatch(/^ro\b/);
  });

  it('SIGKILL: systemd restarts the daemon, which serves again', async () => {
    const pid = await show('MainPID');
    const restarts = Number(await show('NRestarts'));
    await insideOk(`kill -KILL ${pid}`);
    await waitFor(
      'systemd to restart vmhostd',
      async () => {
        const [n, state, now] = [
          Number(await show('NRestarts')),
          await show('ActiveState'),
          await show('MainPID'),
        ];
        return n === restarts + 1 && state === 'active' && now !== pid && now !== '0' ? true : undefined;
      },
      60_000,
      250,
    );
    const c = await Client.connect(url());
    expect(await c.call('Host.ping')).toBe(true);
    await c.close();
  });

  it('systemctl stop: a clean exit within the stop timeout', async () => {
    await insideOk('systemctl stop vmhostd', 120_000);
    expect(await show('ActiveState')).toBe('inactive');
    expect(await show('Result')).toBe('success'); // "timeout" had systemd needed SIGKILL
    expect(await show('ExecMainStatus')).toBe('0');
  });

  it('a bad config: exit 2, no restart loop, the error in journalctl -u vmhostd', async () => {
    const restarts = Number(await show('NRestarts'));
    await insideOk(`sed -i 's/^port = .*/port = "not-a-port"/' /etc/vmhostd/vmhostd.toml`);
    const start = await inside('systemctl start vmhostd');
    expect(start.code).not.toBe(0);
    expect(await show('ExecMainStatus')).toBe('2');
    // RestartPreventExitStatus=2: straight to failed, not "auto-restart".
    expect(await show('ActiveState')).toBe('failed');
    expect(await show('SubState')).toBe('failed');
    expect(Number(await show('NRestarts'))).toBe(restarts);
    const journal = await insideOk('journalctl -u vmhostd --no-pager -o cat');
    expect(journal).toMatch(/listen\.port/);
    expect(journal).toMatch(/"msg":"ready"/); // the earlier runs' log lines are there too
    expect(journal).toMatch(/"msg":"removed"/);
  });
});
