// vmhost-client status against the real RpcServer with a stand-in
// Host.getStatus held to the API's HostStatus schema, plus the pure view.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineMethod } from '../../src/api/define-method.js';
import { HostStatus, NoParams } from '../../src/api/schemas.js';
import { main } from '../../src/cli/main.js';
import { formatDuration, formatUptime, renderStatus, toStatus } from '../../src/cli/status-view.js';
import { RpcServer } from '../../src/rpc/server.js';
import { checkResult } from '../helpers/contract-check.js';

const VM = '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0';
const NOW = Date.parse('2026-12-01T23:10:00.000Z');

const status: HostStatus = {
  startedAt: '2026-12-01T20:00:00.000Z',
  uptimeSeconds: 3 * 3600 + 10 * 60,
  libvirt: { connected: true, reconnects: 2, since: '2026-12-01T22:50:01.000Z' },
  vms: { total: 3, byStatus: { Up: 2, Down: 1 } },
  dimms: { plugged: 5, unplugging: 1 },
  clients: { ws: 2, stomp: 1 },
  inFlight: [
    { operation: 'hotunplug', vmId: VM, vmName: 'demo', alias: 'ua-slow', since: '2026-12-01T23:09:48.000Z' },
  ],
  recent: [
    {
      at: '2026-12-01T23:09:40.000Z',
      operation: 'hotunplug',
      vmId: VM,
      vmName: 'demo',
      alias: 'ua-1',
      outcome: 'ok',
      durationMs: 612.4,
    },
    {
      at: '2026-12-01T23:08:00.000Z',
      operation: 'hotunplug',
      vmId: VM,
      vmName: null,
      alias: 'ua-2',
      outcome: 'guest-rejected',
      durationMs: 1520,
    },
    {
      at: '2026-12-01T23:00:00.000Z',
      operation: 'late-removal',
      vmId: VM,
      vmName: 'demo',
      alias: 'ua-3',
      outcome: 'removed',
      durationMs: null,
    },
  ],
};

let server: RpcServer;
let url: string;

beforeAll(async () => {
  checkResult('Host.getStatus', status);
  server = await RpcServer.start({
    host: '127.0.0.1',
    port: 0,
    methods: [
      defineMethod({
        name: 'Host.getStatus',
        summary: 'stub',
        params: NoParams,
        result: HostStatus,
        handler: async () => status,
      }),
    ],
    logger: pino({ level: 'silent' }),
    apiVersion: '1.0-test',
    serverName: 'vmhostd-cli-test',
  });
  url = server.url();
});
afterAll(() => server.close({ drainMs: 100 }));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = { text: '', isTTY: false, write: (s: string) => (out.text += s) };
  const err = { text: '', isTTY: false, write: (s: string) => (err.text += s) };
  const code = await main(['--url', url, ...argv], {}, { stdout: out, stderr: err, now: () => NOW });
  return { code, out: out.text, err: err.text };
}

describe('vmhost-client status', () => {
  it('prints one screen: uptime, libvirt, VMs, DIMMs, clients, in flight, last outcomes with durations', async () => {
    const r = await run('status');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    const lines = r.out.split('\n');
    expect(lines).toContain('Uptime:    3h 10m (started 2026-12-01T20:00:00.000Z)');
    expect(lines).toContain('libvirt:   connected since 22:50:01, 2 reconnects');
    expect(lines).toContain('VMs:       3 (1 Down, 2 Up)');
    expect(lines).toContain('DIMMs:     5 plugged, 1 unplugging');
    expect(lines).toContain('Clients:   1 stomp, 2 ws');
    expect(lines).toContain('In flight: 1');
    expect(r.out).toMatch(/^hotunplug\s+demo\s+ua-slow\s+12 s$/m);
    const table = r.out.slice(r.out.indexOf('Last outcomes'));
    expect(table).toMatch(/^23:09:40\s+hotunplug\s+demo\s+ua-1\s+ok\s+612 ms$/m);
    // No name known: the UUID stands in.
    expect(table).toMatch(
      new RegExp(`^23:08:00\\s+hotunplug\\s+${VM}\\s+ua-2\\s+guest-rejected\\s+1\\.52 s$`, 'm'),
    );
    expect(table).toMatch(/^23:00:00\s+late-removal\s+demo\s+ua-3\s+removed\s+-$/m);
    // Newest first, as the daemon sends them.
    expect(table.indexOf('ua-1')).toBeLessThan(table.indexOf('ua-2'));
  });

  it("--json prints the daemon's answer as is", async () => {
    const r = await run('--json', 'status');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual(status);
  });

  it('status takes no arguments', async () => {
    const r = await run('status', 'extra');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/usage: vmhost-client status/);
  });

  it('the view tolerates another daemon version (missing fields) and says when libvirt is down', () => {
    const v = toStatus({ libvirt: { connected: false }, recent: [{}], inFlight: 'x' });
    const text = renderStatus(v, NOW);
    expect(text).toMatch(/^libvirt:\s+DISCONNECTED, 0 reconnects$/m);
    expect(text).toMatch(/^VMs:\s+0$/m);
    expect(text).toMatch(/^In flight:\s+0$/m);
    expect(renderStatus(toStatus({ ...status, recent: [] }), NOW)).toMatch(/Last outcomes.*\n\s+none yet\n$/);
  });

  it('formats uptimes and durations for people', () => {
    expect([
      formatUptime(42),
      formatUptime(432),
      formatUptime(7500),
      formatUptime(3 * 86400 + 5 * 3600),
    ]).toEqual(['42s', '7m 12s', '2h 5m', '3d 5h']);
    expect([
      formatDuration(null),
      formatDuration(850.4),
      formatDuration(1250),
      formatDuration(31_400),
    ]).toEqual(['-', '850 ms', '1.25 s', '31 s']);
  });
});
