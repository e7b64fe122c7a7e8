// Faults a real host produces: the daemon killed mid-unplug, the VM destroyed
// mid-unplug, the client gone mid-unplug. Real libvirtd, real guests.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Dimm, Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { hostReady, useGuests } from '../helpers/guest.js';
import { TestRpcClient as Client, expectRpcError } from '../helpers/rpc-client.js';
import { liveDimmAliases } from '../helpers/virsh.js';
import { waitFor } from '../helpers/wait.js';

const guests = useGuests();
let daemons: DaemonProcess[] = [];

beforeAll(async () => {
  await hostReady();
});
afterEach(async () => {
  await Promise.all(daemons.map((d) => d.kill()));
  daemons = [];
});

async function daemon(): Promise<DaemonProcess> {
  const d = await startDaemon({ domainPrefix: 'vmhostd-test-f-' });
  daemons.push(d);
  return d;
}

const unplugParams = (vmId: string, d: Dimm, timeout = 30) => ({
  vmID: vmId,
  params: { vmId, memory: { size: d.size, node: d.node, alias: d.alias } },
  timeout,
});

describe('daemon faults on a real host', () => {
  it('SIGKILLed mid-unplug: after restart the DIMM is gone, memory and guaranteed are right, and the first client gets device_removed late', async () => {
    const g = await guests.start({ kind: 'cooperative', namePrefix: 'f-kill' });
    let d = await daemon();
    let c = await Client.connect(d.url);
    const memTotal0 = await g.memTotalKiB();
    const plugged = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: { size: 256, node: 0 }, memGuaranteedSize: 700 },
    });
    const dimm = plugged.memoryDevices[0]!;
    expect(plugged.memGuaranteedSize).toBe(700);
    const memTotal = await g.waitForMemTotal((k) => k >= memTotal0 + 255 * 1024, 60_000);

    void c.call('VM.hotunplugMemory', unplugParams(g.uuid, dimm)).catch(() => undefined);
    await d.waitForLog((l) => l.msg === 'detach requested' && l.alias === dimm.alias, 20_000);
    await d.kill();

    // The guest releases the DIMM while no daemon runs.
    await waitFor(
      'libvirt to drop the DIMM',
      async () => !(await liveDimmAliases(g.name)).includes(dimm.alias),
      60_000,
    );
    await g.waitForMemTotal((k) => k <= memTotal - 255 * 1024, 60_000);

    d = await daemon();
    c = await Client.connect(d.url);
    const n = await c.waitForNotification((x) => x.method === `|virt|device_removed|${g.uuid}`, 15_000);
    expect(n.params).toMatchObject({ alias: dimm.alias, late: true, memSize: plugged.memSize - 256 });
    const st = await c.stats(g.uuid);
    expect(st.memoryDevices).toHaveLength(0);
    expect(st.memSize).toBe(plugged.memSize - 256);
    expect(st.memGuaranteedSize).toBeLessThanOrEqual(st.memSize);
    expect(st.memGuaranteedSize).toBe(Math.min(700, st.memSize));
    await c.close();
  });

  it('answers vm-gone at once when the VM is destroyed during an unplug', async () => {
    const g = await guests.start({ kind: 'silent', namePrefix: 'f-gone' });
    const d = await daemon();
    const c = await Client.connect(d.url);
    const s = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: { size: 128, node: 0 } },
    });
    const pending = expectRpcError(
      c.call('VM.hotunplugMemory', unplugParams(g.uuid, s.memoryDevices[0]!, 60)),
    );
    await d.waitForLog((l) => l.msg === 'detach requested', 20_000);
    // vm-gone, not the 60 s timeout: the stop ended the wait.
    await g.destroy();
    const e = await pending;
    expect(e.code).toBe(85);
    expect(e.reason).toBe('vm-gone');
    await c.close();
  });

  it('completes, logs and notifies an unplug whose client disconnected mid-call', async () => {
    const g = await guests.start({ kind: 'cooperative', namePrefix: 'f-disc' });
    const d = await daemon();
    const watcher = await Client.connect(d.url);
    const c = await Client.connect(d.url);
    const s = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: { size: 128, node: 0 } },
    });
    const dimm = s.memoryDevices[0]!;
    void c.call('VM.hotunplugMemory', unplugParams(g.uuid, dimm)).catch(() => undefined);
    await d.waitForLog((l) => l.msg === 'detach requested' && l.alias === dimm.alias, 20_000);
    await c.close();
    const n = await watcher.waitForNotification((x) => x.method === `|virt|device_removed|${g.uuid}`, 30_000);
    expect(n.params).toMatchObject({ alias: dimm.alias });
    await d.waitForLog((l) => l.msg === 'removed' && l.alias === dimm.alias, 10_000);
    const st = await watcher.stats(g.uuid);
    expect(st.memoryDevices).toHaveLength(0);
    await watcher.close();
  });
});
