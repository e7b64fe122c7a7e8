// The whole daemon (child process) on our fake libvirtd, scraped over HTTP:
// the loopback metrics listener, libvirt going down and coming back, a late
// removal, per-VM rejections. The fake is for what a real host cannot do on
// demand (libvirtd gone, a guest releasing on cue); real-guest outcomes are
// in metrics-real-guest.test.ts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LAG_SAMPLE_MS } from '../../src/metrics/definitions.js';
import { type FakeDaemon, FakeLibvirtd, startOnFake, waitFor } from '../helpers/fake-daemon.js';
import { httpsGet, metricsUrlOf, Scrape, scrape } from '../helpers/prom-text.js';
import { TestRpcClient as Client, expectRpcError } from '../helpers/rpc-client.js';

let fake: FakeLibvirtd;
let fd: FakeDaemon | undefined;
const clients: Client[] = [];

beforeEach(async () => {
  fake = await FakeLibvirtd.start();
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await fd?.stop();
  fd = undefined;
  await fake.stop();
});

async function daemon(
  args: string[] = [],
  config?: string,
  tls?: { ca: Buffer; cert: Buffer; key: Buffer },
): Promise<{ c: Client; d: FakeDaemon }> {
  fd = await startOnFake(fake, { unplugTimeoutS: 5, args, ...(config ? { config } : {}) });
  const c = await Client.connect(fd.daemon.url, tls ?? {});
  clients.push(c);
  return { c, d: fd };
}

const memory = (vmId: string, alias: string) => ({ vmId, memory: { size: 128, node: 0, alias } });

describe('metrics of the daemon on the fake libvirtd', () => {
  it('the loopback listener and the main listener serve the same figures; libvirt down and back moves up and reconnects', async () => {
    // A socket path of our own, so a second fake can take it over.
    await fake.stop();
    const dir = mkdtempSync(join(tmpdir(), 'vmhostd-metrics-'));
    const socketPath = join(dir, 'libvirt-sock');
    fake = await FakeLibvirtd.start({ socketPath });
    fake.addDomain({ memoryMiB: 1024, dimms: [{ alias: 'ua-b1', sizeMiB: 128 }] });
    fake.addDomain({ memoryMiB: 1024, running: false, persistent: true });
    const { d } = await daemon(['--metrics-listen', '127.0.0.1:0']);
    const ready = d.daemon.logs.find((l) => l.msg === 'ready');
    const local = String(ready?.metricsUrl);
    expect(local).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    for (const url of [local, metricsUrlOf(d.daemon.url)]) {
      const s = await scrape(url);
      expect(s.value('vmhostd_libvirt_up')).toBe(1);
      expect(s.value('vmhostd_vms', { status: 'Up' })).toBe(1);
      expect(s.value('vmhostd_vms', { status: 'Down' })).toBe(1);
      expect(s.value('vmhostd_dimms', { state: 'plugged' })).toBe(1);
      expect(s.value('vmhostd_clients', { transport: 'ws' })).toBe(1);
    }

    // libvirtd goes away: up drops to 0 while the daemon retries.
    await fake.stop();
    await waitFor('libvirt_up to drop', async () => (await scrape(local)).value('vmhostd_libvirt_up') === 0);
    expect((await scrape(local)).value('vmhostd_libvirt_reconnects_total')).toBe(0);
    // ... and comes back on the same socket.
    fake = await FakeLibvirtd.start({ socketPath });
    await d.daemon.waitForLog((l) => l.msg === 'libvirt connection restored');
    const s = await scrape(local);
    expect(s.value('vmhostd_libvirt_up')).toBe(1);
    expect(s.value('vmhostd_libvirt_reconnects_total')).toBe(1);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a late removal moves the late-removals counter; per_vm adds rejections and memory by VM', async () => {
    const silent = fake.addDomain({
      name: 'fake-silent',
      memoryMiB: 1024,
      unplug: 'silent',
      silentDelayMs: 10,
    }).uuid;
    const rejecting = fake.addDomain({ name: 'fake-rejecting', memoryMiB: 1024, unplug: 'reject' }).uuid;
    const { c, d } = await daemon([], '[metrics]\nper_vm = true\n');
    const url = metricsUrlOf(d.daemon.url);
    await c.call('VM.hotplugMemory', { vmID: silent, params: memory(silent, 'ua-s1') });
    await c.call('VM.hotplugMemory', { vmID: rejecting, params: memory(rejecting, 'ua-r1') });

    const e = await expectRpcError(
      c.call('VM.hotunplugMemory', { vmID: silent, params: memory(silent, 'ua-s1'), timeout: 0.3 }),
    );
    expect(e.reason).toBe('timeout');
    let s = await scrape(url);
    expect(s.value('vmhostd_late_removals_total')).toBe(0);
    expect(s.value('vmhostd_dimms', { state: 'unplugging' })).toBe(1);
    fake.emitDeviceRemoved(silent, 'ua-s1');
    await c.waitForNotification((n) => n.method === `|virt|device_removed|${silent}`);
    s = await scrape(url);
    expect(s.value('vmhostd_late_removals_total')).toBe(1);
    expect(s.value('vmhostd_dimms', { state: 'unplugging' })).toBe(0);

    const r = await expectRpcError(
      c.call('VM.hotunplugMemory', { vmID: rejecting, params: memory(rejecting, 'ua-r1') }),
    );
    expect(r.reason).toBe('guest-rejected');
    s = await scrape(url);
    expect(
      s.value('vmhostd_vm_unplug_rejections_total', { vm_id: rejecting, vm_name: 'fake-rejecting' }),
    ).toBe(1);
    expect(s.value('vmhostd_vm_unplug_rejections_total', { vm_id: silent })).toBe(0);
    expect(s.value('vmhostd_vm_memory_bytes', { vm_name: 'fake-rejecting' })).toBe(
      (1024 + 128) * 1024 * 1024,
    );
    expect(s.value('vmhostd_vm_memory_bytes', { vm_name: 'fake-silent' })).toBe(1024 * 1024 * 1024);
    expect(s.value('vmhostd_rpc_requests_total', { method: 'VM.hotunplugMemory', code: '85' })).toBe(2);
    expect(s.value('vmhostd_rpc_requests_total', { method: 'VM.hotplugMemory', code: '0' })).toBe(2);
  });

  it('an unplug waiting on the guest shows in flight (gauge and Host.getStatus), then as the last outcome', async () => {
    const silent = fake.addDomain({
      name: 'fake-slow',
      memoryMiB: 1024,
      unplug: 'silent',
      silentDelayMs: 10,
    }).uuid;
    const { c, d } = await daemon();
    const url = metricsUrlOf(d.daemon.url);
    await c.call('VM.hotplugMemory', { vmID: silent, params: memory(silent, 'ua-w1') });
    const call = expectRpcError(
      c.call('VM.hotunplugMemory', { vmID: silent, params: memory(silent, 'ua-w1'), timeout: 5 }),
    );
    await waitFor('the unplug to be in flight', async () => {
      const s = await scrape(url);
      return s.value('vmhostd_operations_in_flight', { method: 'hotunplug' }) === 1;
    });
    const during = await c.call<{ inFlight: { operation: string; vmName: string; alias?: string }[] }>(
      'Host.getStatus',
    );
    expect(during.inFlight).toEqual([
      expect.objectContaining({ operation: 'hotunplug', vmName: 'fake-slow', alias: 'ua-w1' }),
    ]);
    // The guest never answers; the call times out.
    expect((await call).reason).toBe('timeout');
    const after = await c.call<{
      inFlight: unknown[];
      recent: { operation: string; outcome: string; durationMs: number }[];
    }>('Host.getStatus');
    expect(after.inFlight).toEqual([]);
    expect(after.recent[0]).toMatchObject({ operation: 'hotunplug', outcome: 'timeout' });
    expect(after.recent[0]!.durationMs).toBeGreaterThan(0);
    expect(after.recent[1]).toMatchObject({ operation: 'hotplug', outcome: 'ok' });
    const s = await scrape(url);
    expect(s.value('vmhostd_operations_in_flight', { method: 'hotunplug' })).toBe(0);
    expect(s.count('vmhostd_unplug_duration_seconds', { outcome: 'timeout' })).toBe(1);
    expect(s.value('vmhostd_operations_total', { method: 'hotunplug', outcome: 'timeout' })).toBe(1);
    expect(s.value('vmhostd_operations_total', { method: 'hotplug', outcome: 'ok' })).toBe(1);
    expect(s.count('vmhostd_plug_duration_seconds', { outcome: 'plugged' })).toBe(1);
    // The guest never released it: no release time.
    expect(s.count('vmhostd_guest_release_seconds')).toBe(0);
  });

  it('with mutual TLS, /metrics on the main listener needs a client certificate; metrics.listen stays plain on loopback', async () => {
    const pki = mkdtempSync(join(tmpdir(), 'vmhostd-metrics-pki-'));
    try {
      const script = resolve(import.meta.dirname, '../../scripts/make-lab-pki.sh');
      execFileSync('sh', [script, pki, 'localhost'], { stdio: 'ignore' });
      const { d } = await daemon(
        [
          ...['--tls-cert', join(pki, 'server.pem'), '--tls-key', join(pki, 'server-key.pem')],
          ...['--tls-ca', join(pki, 'ca.pem'), '--metrics-listen', '127.0.0.1:0'],
        ],
        undefined,
        {
          ca: readFileSync(join(pki, 'ca.pem')),
          cert: readFileSync(join(pki, 'client.pem')),
          key: readFileSync(join(pki, 'client-key.pem')),
        },
      );
      expect(d.daemon.url).toMatch(/^wss:/);
      const url = metricsUrlOf(d.daemon.url);
      expect(url).toMatch(/^https:/);
      const ca = readFileSync(join(pki, 'ca.pem'));
      // Refused after the handshake with a 403 naming why, before any route sees the request.
      const refused = await httpsGet(url, { ca });
      expect(refused.status).toBe(403);
      expect(refused.body).toMatch(/^client certificate refused/);
      expect(refused.body).not.toMatch(/vmhostd_/);
      const ok = await httpsGet(url, {
        ca,
        cert: readFileSync(join(pki, 'client.pem')),
        key: readFileSync(join(pki, 'client-key.pem')),
      });
      expect(ok.status).toBe(200);
      expect((await Scrape.parse(ok.body)).value('vmhostd_libvirt_up')).toBe(1);
      // Plain HTTP to the TLS port is no way around it.
      await expect(fetch(url.replace(/^https/, 'http'))).rejects.toThrow();
      const local = String(d.daemon.logs.find((l) => l.msg === 'ready')?.metricsUrl);
      const s = await scrape(local);
      expect(s.value('vmhostd_connections_refused_total', { reason: 'tls' })).toBeGreaterThanOrEqual(1);
    } finally {
      rmSync(pki, { recursive: true, force: true });
    }
  });

  it('an idle daemon sleeps: its main thread wakes about as often as the lag sampler fires, not every 10 ms', async () => {
    fake.addDomain({ memoryMiB: 1024, dimms: [{ alias: 'ua-i1', sizeMiB: 128 }] });
    fd = await startOnFake(fake, { args: ['--log-level', 'info'] });
    const pid = fd.daemon.proc.pid ?? -1;
    // Voluntary context switches of the main thread (tid = pid): each is one
    // sleep in epoll, so they count its wake-ups, however loaded the machine.
    const sleeps = () =>
      Number(
        /^voluntary_ctxt_switches:\s+(\d+)/m.exec(
          readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'),
        )?.[1],
      );
    const before = sleeps();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 2_000)); // the quiet window itself, not a synchronisation
    const seconds = (performance.now() - t0) / 1000;
    const perSecond = (sleeps() - before) / seconds;
    // The sampler's 10 a second, the libvirt keepalive and a little slack; prom-client's default was 100.
    expect(perSecond).toBeGreaterThan(0);
    expect(perSecond).toBeLessThan((1000 / LAG_SAMPLE_MS) * 2 + 5);
  });
});
