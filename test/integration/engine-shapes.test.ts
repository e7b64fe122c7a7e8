// The engine's request and result shapes on a real guest, over WebSocket:
// hot plug and hot unplug with exactly the memory dict ovirt-engine builds
// (MemoryUtils.createVmMemoryDeviceMap) and with VDSM 4.4's xml form; VDSM's
// result shapes (VM.getStats -> [VmStats], Host.getVMList's three forms,
// Host.ping2) and VM_status params {"<vmId>": stats, notify_time}. Every
// answer also passes the published schemas (the test client checks them).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Dimm, Stats, UnplugResult } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { type Guest, hostReady, startGuest } from '../helpers/guest.js';
import { expectRpcError, TestRpcClient, vmStatusStats } from '../helpers/rpc-client.js';
import { liveDimmAliases } from '../helpers/virsh.js';

/** ovirt-engine's dict for a memory device: strings in specParams and address, alias ua-<deviceId>. */
function engineMemory(deviceId: string, size: number, node: number, d?: Dimm) {
  return {
    type: 'memory',
    device: 'memory',
    ...(d ? { address: { type: 'dimm', slot: String(d.slot), base: d.base } } : {}),
    specParams: { size: String(size), node: String(node) },
    deviceId,
    alias: `ua-${deviceId}`,
    size,
    node,
  };
}

function memoryXml(size: number, alias: string, d?: Dimm): string {
  return (
    `<devices><memory model='dimm'><target><size unit='KiB'>${size * 1024}</size><node>0</node></target>` +
    `<alias name='${alias}'/>${d ? `<address type='dimm' slot='${d.slot}' base='${d.base}'/>` : ''}</memory></devices>`
  );
}

describe('engine shapes on a real guest', () => {
  let g: Guest;
  let daemon: DaemonProcess;
  let c: TestRpcClient;

  beforeAll(async () => {
    await hostReady();
    g = await startGuest({ kind: 'cooperative', namePrefix: 'es' });
    daemon = await startDaemon({ domainPrefix: 'vmhostd-test-es' });
    c = await TestRpcClient.connect(daemon.url);
  });
  afterAll(async () => {
    await c?.close();
    await daemon?.stop();
    await g?.destroy();
  });

  it("VDSM's read shapes: getStats list, getVMList forms, ping2", async () => {
    expect(await c.call('Host.ping2')).toBe(true);
    const [stats, ...more] = await c.call<Stats[]>('VM.getStats', { vmID: g.uuid });
    expect(more).toEqual([]);
    expect(stats).toMatchObject({ vmId: g.uuid, vmName: g.name, status: 'Up' });
    expect(await c.call('Host.getVMList', { vmList: [g.uuid] })).toEqual([{ vmId: g.uuid, status: 'Up' }]);
    expect(await c.call('Host.getVMList', { vmList: [g.uuid], onlyUUID: true })).toEqual([g.uuid]);
    expect(await c.call('Host.getVMList', { vmList: [g.uuid], fullStatus: true })).toEqual([
      {
        vmId: g.uuid,
        vmName: g.name,
        status: 'Up',
        memSize: stats?.memSize,
        memGuaranteedSize: stats?.memGuaranteedSize,
      },
    ]);
    expect(await c.call('Host.getVMList', { vmList: [randomUUID()] })).toEqual([]);
  });

  it("plugs and unplugs with the engine's exact dict; the alias is the engine's ua-<deviceId>", async () => {
    const deviceId = randomUUID();
    const before = await c.stats(g.uuid);
    const { alias: _unsentOnPlug, ...plugDict } = engineMemory(deviceId, 128, 0);
    const plugged = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: plugDict, memGuaranteedSize: before.memGuaranteedSize },
    });
    const dimm = plugged.memoryDevices.find((d) => d.alias === `ua-${deviceId}`);
    expect(dimm).toMatchObject({ size: 128, node: 0, state: 'plugged' });
    expect(await liveDimmAliases(g.name)).toContain(`ua-${deviceId}`);
    const status = await c.waitForNotification(
      (n) =>
        n.method === `|virt|VM_status|${g.uuid}` &&
        vmStatusStats(n, g.uuid).memoryDevices.some((d) => d.alias === `ua-${deviceId}`),
    );
    expect(Object.keys(status.params as object).sort()).toEqual([g.uuid, 'notify_time'].sort());

    // A wrong slot names the field and changes nothing.
    if (!dimm) throw new Error('no DIMM');
    const wrongSlot = {
      ...engineMemory(deviceId, 128, 0, dimm),
      address: { type: 'dimm', slot: String(dimm.slot + 1) },
    };
    const e = await expectRpcError(
      c.call('VM.hotunplugMemory', { vmID: g.uuid, params: { vmId: g.uuid, memory: wrongSlot } }),
    );
    expect(e.code).toBe(-32602);
    expect(e.error.data?.field).toBe('memory.address.slot');
    expect(await liveDimmAliases(g.name)).toContain(`ua-${deviceId}`);

    const res = await c.call<UnplugResult>('VM.hotunplugMemory', {
      vmID: g.uuid,
      params: {
        vmId: g.uuid,
        memory: engineMemory(deviceId, 128, 0, dimm),
        memGuaranteedSize: before.memGuaranteedSize,
      },
    });
    expect(res).toMatchObject({ status: 'removed', alias: `ua-${deviceId}`, memSize: before.memSize });
    const removed = await c.waitForNotification(
      (n) => n.method === `|virt|device_removed|${g.uuid}` && (n.params as Dimm).alias === `ua-${deviceId}`,
    );
    expect(removed.params).toEqual({ alias: `ua-${deviceId}`, memSize: before.memSize, late: false });
    expect(await liveDimmAliases(g.name)).not.toContain(`ua-${deviceId}`);
  });

  it('plugs and unplugs with the xml form', async () => {
    const alias = `ua-${randomUUID()}`;
    const before = await c.stats(g.uuid);
    const plugged = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, xml: memoryXml(128, alias) },
    });
    const dimm = plugged.memoryDevices.find((d) => d.alias === alias);
    expect(dimm).toMatchObject({ size: 128, node: 0 });
    if (!dimm) throw new Error('no DIMM');
    // XML that is not a DIMM's is refused before libvirt sees it.
    const dtd = await expectRpcError(
      c.call('VM.hotunplugMemory', {
        vmID: g.uuid,
        params: { vmId: g.uuid, xml: `<!DOCTYPE devices [<!ENTITY a "x">]>${memoryXml(128, alias, dimm)}` },
      }),
    );
    expect(dtd.code).toBe(-32602);
    expect(dtd.error.data?.field).toBe('params.params.xml');
    const res = await c.call<UnplugResult>('VM.hotunplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, xml: memoryXml(128, alias, dimm) },
    });
    expect(res).toMatchObject({ status: 'removed', alias, memSize: before.memSize });
    expect(await liveDimmAliases(g.name)).not.toContain(alias);
  });
});
