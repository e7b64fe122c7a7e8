// The daemon end to end: a real WebSocket client, the real daemon process, a
// real libvirtd and real TCG guests that really release, reject or ignore
// DIMM unplugs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDomainXml } from '../../src/virt/domain-xml.js';
import type { Dimm, Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { type Guest, hostReady, startGuest } from '../helpers/guest.js';
import { TestRpcClient as Client, expectRpcError, type TestRpcClient } from '../helpers/rpc-client.js';
import { virsh } from '../helpers/virsh.js';

const MiB = 1024;

function plug(c: TestRpcClient, vmId: string, size: number, alias?: string): Promise<Stats> {
  return c.call<Stats>('VM.hotplugMemory', {
    vmID: vmId,
    params: { vmId, memory: { size, node: 0, ...(alias ? { alias } : {}) } },
  });
}

function unplug(c: TestRpcClient, vmId: string, d: Dimm, timeout?: number) {
  return c.call<{ status: string; alias: string; memSize: number; memGuaranteedSize: number }>(
    'VM.hotunplugMemory',
    {
      vmID: vmId,
      params: { vmId, memory: { size: d.size, node: d.node, alias: d.alias } },
      ...(timeout ? { timeout } : {}),
    },
  );
}

describe('daemon: hot plug and hot unplug on real guests', () => {
  let coop: Guest;
  let daemon: DaemonProcess;
  let a: TestRpcClient;
  let b: TestRpcClient;

  beforeAll(async () => {
    await hostReady();
    coop = await startGuest({ kind: 'cooperative', namePrefix: 'd-coop' });
    daemon = await startDaemon({ domainPrefix: 'vmhostd-test-d-' });
    a = await Client.connect(daemon.url);
    b = await Client.connect(daemon.url);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await daemon?.stop();
    await coop?.destroy();
  });

  it('plugs two DIMMs and unplugs one: result, memory, MemTotal, notification, hash', async () => {
    const base = await a.stats(coop.uuid);
    const memTotal0 = await coop.memTotalKiB();
    await plug(a, coop.uuid, 128);
    const two = await plug(a, coop.uuid, 128);
    expect(two.memoryDevices).toHaveLength(2);
    expect(two.memSize).toBe(base.memSize + 256);
    await coop.waitForMemTotal((k) => k >= memTotal0 + 256 * MiB - 1024, 60_000);

    const victim = two.memoryDevices[0]!;
    const res = await unplug(a, coop.uuid, victim);
    expect(res).toMatchObject({ status: 'removed', alias: victim.alias, memSize: base.memSize + 128 });
    await coop.waitForMemTotal((k) => k <= memTotal0 + 128 * MiB + 1024, 60_000);

    const n = await b.waitForNotification(
      (x) =>
        x.method === `|virt|device_removed|${coop.uuid}` &&
        (x.params as { alias: string }).alias === victim.alias,
      10_000,
    );
    expect(n.params).toMatchObject({ alias: victim.alias, memSize: base.memSize + 128, late: false });

    const after = await a.stats(coop.uuid);
    expect(after.memoryDevices.map((d) => d.alias)).not.toContain(victim.alias);
    expect(after.memoryDevices).toHaveLength(1);
    expect(after.hash).not.toBe(two.hash);
    expect(after.memSize).toBe(base.memSize + 128);
    // Taken from libvirt's device-removed event with no re-read: the same as libvirt's live XML says.
    const fresh = parseDomainXml(await virsh('dumpxml', coop.name));
    expect(after.memSize).toBe(fresh.memory);
    expect(after.memoryDevices.map((d) => d.alias)).toEqual(fresh.dimms.map((d) => d.alias));
  });

  it('serialises two unplugs sent at once on one VM; both succeed', async () => {
    await plug(a, coop.uuid, 128);
    const s = await plug(a, coop.uuid, 128);
    const [d1, d2] = s.memoryDevices.slice(-2) as [Dimm, Dimm];
    const before = s.memSize;
    const [r1, r2] = await Promise.all([unplug(a, coop.uuid, d1), unplug(b, coop.uuid, d2)]);
    expect(r1.status).toBe('removed');
    expect(r2.status).toBe('removed');
    expect(Math.min(r1.memSize, r2.memSize)).toBe(before - 256);
    // The per-VM queue ran them one after the other: one result saw only its own removal.
    expect(Math.max(r1.memSize, r2.memSize)).toBe(before - 128);
    // Log lines may trail the replies: wait for them.
    const line = (msg: string, alias: string) =>
      daemon.waitForLog((l) => l.msg === msg && l.vmId === coop.uuid && l.alias === alias, 10_000);
    const [first, second] = r1.memSize < r2.memSize ? [d2, d1] : [d1, d2];
    const firstRemoved = await line('removed', first.alias);
    const secondDetach = await line('detach requested', second.alias);
    expect(daemon.logs.indexOf(secondDetach)).toBeGreaterThan(daemon.logs.indexOf(firstRemoved));
    // Each request's one "rpc call" line names the operation whose steps its final line holds.
    const call = await daemon.waitForLog(
      (l) => l.msg === 'rpc call' && l.method === 'VM.hotunplugMemory' && l.opId === firstRemoved.opId,
      10_000,
    );
    expect(call).toMatchObject({ outcome: 'ok' });
    expect(typeof firstRemoved.opId).toBe('string');
  });

  it('rejects bad input with a clear error naming the field, and changes nothing', async () => {
    const before = await a.stats(coop.uuid);
    const vmId = coop.uuid;

    const parse = (await a.raw('{"jsonrpc":"2.0","id":1,"method":')) as { error: { code: number } };
    expect(parse.error.code).toBe(-32700);

    const unknown = await expectRpcError(a.call('VM.frobnicate', { vmID: vmId }));
    expect(unknown.code).toBe(-32601);

    const missing = await expectRpcError(a.call('VM.getStats', {}));
    expect(missing.code).toBe(-32602);
    expect(missing.error.data?.field).toMatch(/vmID/);

    const extra = await expectRpcError(a.call('VM.getStats', { vmID: vmId, evil: 1 }));
    expect(extra.code).toBe(-32602);
    expect(JSON.stringify(extra.error.data)).toMatch(/evil/);

    const typed = await expectRpcError(
      a.call('VM.hotplugMemory', { vmID: vmId, params: { vmId, memory: { size: '128', node: 0 } } }),
    );
    expect(typed.code).toBe(-32602);
    expect(typed.error.data?.field).toMatch(/params\.memory\.size/);

    for (const size of [-128, 0, 1e12, 1.5]) {
      const e = await expectRpcError(
        a.call('VM.hotplugMemory', { vmID: vmId, params: { vmId, memory: { size, node: 0 } } }),
      );
      expect(e.code).toBe(-32602);
      expect(e.error.data?.field).toMatch(/size/);
    }

    const noVm = await expectRpcError(
      a.call('VM.getStats', { vmID: '00000000-0000-4000-8000-000000000001' }),
    );
    expect(noVm.code).toBe(1);

    const xml = await expectRpcError(
      a.call('VM.hotunplugMemory', {
        vmID: vmId,
        params: { vmId, memory: { size: 128, node: 0, alias: "x'/><evil" } },
      }),
    );
    expect(xml.code).toBe(-32602);
    expect(xml.error.data?.field).toMatch(/alias/);

    const mismatch = await expectRpcError(
      a.call('VM.hotplugMemory', {
        vmID: vmId,
        params: { vmId: '00000000-0000-4000-8000-000000000001', memory: { size: 128, node: 0 } },
      }),
    );
    expect(mismatch.code).toBe(-32602);
    expect(mismatch.error.data?.field).toBe('params.vmId');

    const after = await a.stats(coop.uuid);
    expect(after.hash).toBe(before.hash);
    expect(after.memSize).toBe(before.memSize);
  });

  it('closes a connection that sends a 2 MiB message, and keeps serving others', async () => {
    const c = await Client.connect(daemon.url);
    const closed = new Promise<number>((resolve) => c.ws.once('close', (code) => resolve(code)));
    c.ws.send(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'Host.ping',
        params: { pad: 'x'.repeat(2 * 1024 * 1024) },
      }),
    );
    expect(await closed).toBe(1009);
    expect(await a.call('Host.ping')).toBe(true);
  });
});

describe('daemon: guests that reject or ignore the unplug', () => {
  let rej: Guest;
  let silent: Guest;
  let daemon: DaemonProcess;
  let a: TestRpcClient;

  beforeAll(async () => {
    await hostReady();
    [rej, silent] = await Promise.all([
      startGuest({ kind: 'rejecting', namePrefix: 'd-rej' }),
      startGuest({ kind: 'silent', namePrefix: 'd-sil' }),
    ]);
    daemon = await startDaemon({ domainPrefix: 'vmhostd-test-d-' });
    a = await Client.connect(daemon.url);
  });
  afterAll(async () => {
    await a?.close();
    await daemon?.stop();
    await rej?.destroy();
    await silent?.destroy();
  });

  it('reports guest-rejected well before the timeout, keeps the DIMM plugged, and answers a retry the same', async () => {
    const s = await plug(a, rej.uuid, 128);
    const d = s.memoryDevices[0]!;
    // The rejecting guest pins kernel memory in the new block once it is online.
    await rej.waitForConsole(/VMHOST-GUEST PINNED/, 90_000);
    const t0 = Date.now();
    const e = await expectRpcError(unplug(a, rej.uuid, d, 30));
    expect(e.code).toBe(85);
    expect(e.reason).toBe('guest-rejected');
    expect(Date.now() - t0).toBeLessThan(20_000);
    const after = await a.stats(rej.uuid);
    expect(after.memoryDevices.find((x) => x.alias === d.alias)?.state).toBe('plugged');
    const again = await expectRpcError(unplug(a, rej.uuid, d, 30));
    expect(again.reason).toBe('guest-rejected');
    await a.waitForNotification((n) => n.method === `|virt|device_removal_failed|${rej.uuid}`, 10_000);
  });

  it('times out on a silent guest, marks the DIMM unplugging, refuses a second unplug, and remembers across a restart', async () => {
    const s = await plug(a, silent.uuid, 128);
    const d = s.memoryDevices[0]!;
    const t0 = Date.now();
    const e = await expectRpcError(unplug(a, silent.uuid, d, 8));
    const elapsed = Date.now() - t0;
    expect(e.code).toBe(85);
    expect(e.reason).toBe('timeout');
    expect(elapsed).toBeGreaterThanOrEqual(8000);
    expect(elapsed).toBeLessThan(20_000);
    const st = await a.stats(silent.uuid);
    expect(st.memoryDevices.find((x) => x.alias === d.alias)?.state).toBe('unplugging');

    const again = await expectRpcError(unplug(a, silent.uuid, d, 8));
    expect(again.reason).toBe('already-unplugging');

    await a.close();
    expect(await daemon.stop()).toBe(0);
    daemon = await startDaemon({ domainPrefix: 'vmhostd-test-d-' });
    a = await Client.connect(daemon.url);
    const st2 = await a.stats(silent.uuid);
    expect(st2.memoryDevices.find((x) => x.alias === d.alias)?.state).toBe('unplugging');
  });
});
