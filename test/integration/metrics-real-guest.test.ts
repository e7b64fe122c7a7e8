// Metrics move as operations happen on real TCG guests through the real
// daemon and libvirtd, read back over HTTP through an independent
// Prometheus text parser: an unplug the guest releases moves the unplug
// histogram under outcome="removed" (and the guest release time, which it
// contains), a rejecting guest moves outcome="guest-rejected" and nothing
// else; Host.getStatus lists both as the last outcomes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Dimm, Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { type Guest, hostReady, useGuests } from '../helpers/guest.js';
import { metricsUrlOf, type Scrape, scrape } from '../helpers/prom-text.js';
import { TestRpcClient as Client, expectRpcError, type TestRpcClient } from '../helpers/rpc-client.js';

const UNPLUG = 'vmhostd_unplug_duration_seconds';
const RELEASE = 'vmhostd_guest_release_seconds';

function plug(c: TestRpcClient, vmId: string, size: number): Promise<Stats> {
  return c.call<Stats>('VM.hotplugMemory', { vmID: vmId, params: { vmId, memory: { size, node: 0 } } });
}

function unplug(c: TestRpcClient, vmId: string, d: Dimm) {
  return c.call<{ status: string }>('VM.hotunplugMemory', {
    vmID: vmId,
    params: { vmId, memory: { size: d.size, node: d.node, alias: d.alias } },
    timeout: 60,
  });
}

interface Status {
  inFlight: unknown[];
  recent: {
    operation: string;
    vmId: string;
    vmName: string | null;
    alias?: string;
    outcome: string;
    durationMs: number | null;
  }[];
}

/** What moved between two scrapes. */
function delta(before: Scrape, after: Scrape) {
  return {
    count: (name: string, labels: Record<string, string> = {}) =>
      after.count(name, labels) - before.count(name, labels),
    sum: (name: string, labels: Record<string, string> = {}) =>
      after.sum(name, labels) - before.sum(name, labels),
    value: (name: string, labels: Record<string, string> = {}) =>
      after.value(name, labels) - before.value(name, labels),
  };
}

describe('metrics on real guests', () => {
  // Destroyed after the file, also when a start or a test fails.
  const guests = useGuests();
  let coop: Guest;
  let rej: Guest;
  let daemon: DaemonProcess;
  let c: TestRpcClient;
  let url: string;

  beforeAll(async () => {
    await hostReady();
    [coop, rej] = await Promise.all([
      guests.start({ kind: 'cooperative', namePrefix: 'mt-coop' }),
      guests.start({ kind: 'rejecting', namePrefix: 'mt-rej' }),
    ]);
    daemon = await startDaemon({ domainPrefix: 'vmhostd-test-mt-' });
    c = await Client.connect(daemon.url);
    url = metricsUrlOf(daemon.url);
  });
  afterAll(async () => {
    await c?.close();
    await daemon?.stop();
  });

  it('the VMs and their DIMMs show in the gauges', async () => {
    const s0 = await scrape(url);
    expect(s0.value('vmhostd_vms', { status: 'Up' })).toBe(2);
    expect(s0.value('vmhostd_libvirt_up')).toBe(1);
    const plugged0 = s0.value('vmhostd_dimms', { state: 'plugged' });
    await plug(c, coop.uuid, 128);
    const s1 = await scrape(url);
    expect(s1.value('vmhostd_dimms', { state: 'plugged' })).toBe(plugged0 + 1);
    expect(delta(s0, s1).count('vmhostd_plug_duration_seconds', { outcome: 'plugged' })).toBe(1);
    expect(delta(s0, s1).value('vmhostd_operations_total', { method: 'hotplug', outcome: 'ok' })).toBe(1);
  });

  it('an unplug the guest releases moves the histogram under outcome="removed", and the release time', async () => {
    // VDSM's shape: a list of one VmStats.
    const [stats] = await c.call<Stats[]>('VM.getStats', { vmID: coop.uuid });
    const d = stats!.memoryDevices.at(-1)!;
    const before = await scrape(url);
    expect((await unplug(c, coop.uuid, d)).status).toBe('removed');
    const after = await scrape(url);
    const moved = delta(before, after);
    expect(moved.count(UNPLUG, { outcome: 'removed' })).toBe(1);
    expect(moved.count(UNPLUG, { outcome: 'guest-rejected' })).toBe(0);
    expect(moved.count(RELEASE)).toBe(1);
    expect(moved.value('vmhostd_operations_total', { method: 'hotunplug', outcome: 'ok' })).toBe(1);
    expect(moved.value('vmhostd_rpc_requests_total', { method: 'VM.hotunplugMemory', code: '0' })).toBe(1);
    // The guest's share is part of the whole unplug.
    const unplugS = moved.sum(UNPLUG, { outcome: 'removed' });
    const releaseS = moved.sum(RELEASE);
    expect(releaseS).toBeGreaterThan(0);
    expect(unplugS).toBeGreaterThanOrEqual(releaseS);
    expect(after.value('vmhostd_operations_in_flight', { method: 'hotunplug' })).toBe(0);
    const st = await c.call<Status>('Host.getStatus');
    expect(st.recent[0]).toMatchObject({
      operation: 'hotunplug',
      vmId: coop.uuid,
      vmName: coop.name,
      alias: d.alias,
      outcome: 'ok',
    });
    expect(st.recent[0]!.durationMs).toBeGreaterThan(0);
    expect(st.inFlight).toEqual([]);
  });

  it('a rejecting guest moves outcome="guest-rejected", not "removed" nor the release time', async () => {
    const s = await plug(c, rej.uuid, 128);
    const d = s.memoryDevices.at(-1)!;
    // The rejecting guest pins kernel memory in the new block once it is online.
    await rej.waitForConsole(/VMHOST-GUEST PINNED/, 90_000);
    const before = await scrape(url);
    const e = await expectRpcError(unplug(c, rej.uuid, d));
    expect(e.reason).toBe('guest-rejected');
    const after = await scrape(url);
    const moved = delta(before, after);
    expect(moved.count(UNPLUG, { outcome: 'guest-rejected' })).toBe(1);
    expect(moved.count(UNPLUG, { outcome: 'removed' })).toBe(0);
    expect(moved.count(RELEASE)).toBe(0);
    expect(moved.value('vmhostd_operations_total', { method: 'hotunplug', outcome: 'guest-rejected' })).toBe(
      1,
    );
    expect(moved.value('vmhostd_rpc_requests_total', { method: 'VM.hotunplugMemory', code: '85' })).toBe(1);
    // No per-VM series without metrics.per_vm.
    expect(after.families.has('vmhostd_vm_unplug_rejections_total')).toBe(false);
    const st = await c.call<Status>('Host.getStatus');
    expect(st.recent[0]).toMatchObject({
      operation: 'hotunplug',
      vmId: rej.uuid,
      alias: d.alias,
      outcome: 'guest-rejected',
    });
    expect(st.recent.map((r) => r.outcome)).toContain('ok');
  });
});
