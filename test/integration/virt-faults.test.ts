// VmManager against our fake libvirtd (the real RPC protocol on a unix
// socket) for what real guests cannot do on demand: a guest that releases a
// DIMM after the call timed out, events lost while the connection was down,
// a daemon restart in between, and a thousand domains.

import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LibvirtClient } from '../../src/libvirt/index.js';
import { VirtError } from '../../src/virt/errors.js';
import type { DeviceRemovedEvent, VmManagerEvents, VmStats } from '../../src/virt/types.js';
import { VmManager } from '../../src/virt/vm-manager.js';
import { FakeLibvirtd } from '../fakes/fake-libvirtd.js';

let fake: FakeLibvirtd;
const open: { close(): Promise<void> }[] = [];

beforeEach(async () => {
  fake = await FakeLibvirtd.start();
});

afterEach(async () => {
  for (const c of open.splice(0).reverse()) await c.close();
  await fake.stop();
});

async function manager(): Promise<{ client: LibvirtClient; vms: VmManager }> {
  const client = await LibvirtClient.connect({
    socketPath: fake.socketPath,
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
  });
  open.push(client);
  const vms = await VmManager.start(client, {
    log: pino({ level: process.env.VMHOST_TEST_LOG ?? 'silent' }),
    unplugTimeoutMs: 5_000,
    dimmAlignmentMiB: 128,
  });
  open.push(vms);
  return { client, vms };
}

function nextEvent(
  vms: VmManager,
  event: keyof VmManagerEvents,
  pred: (...args: unknown[]) => boolean = () => true,
  ms = 5_000,
): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      vms.off(event, listener as never);
      reject(new Error(`no '${event}' within ${ms} ms`));
    }, ms);
    const listener = (...args: unknown[]) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      vms.off(event, listener as never);
      resolve(args);
    };
    vms.on(event, listener as never);
  });
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof VirtError) {
      if (process.env.DBG) console.log('DBG', err.reason, err.message, err.details);
      return err.reason;
    }
    throw err;
  }
  return 'no error';
}

const dimm = (alias: string) => ({ alias, size: 128, node: 0 });

describe('VmManager faults (fake libvirtd)', () => {
  it('a removal that completes after the timeout finishes the bookkeeping and notifies late', async () => {
    const ref = fake.addDomain({ memoryMiB: 1024, unplug: 'silent', silentDelayMs: 10 });
    const { vms } = await manager();
    await vms.hotplugMemory(ref.uuid, { size: 128, node: 0, alias: 'ua-late' }, { memGuaranteedSize: 1152 });
    expect(await reason(vms.hotunplugMemory(ref.uuid, dimm('ua-late'), { timeoutMs: 200 }))).toBe('timeout');
    expect(vms.stats(ref.uuid).memoryDevices[0]?.state).toBe('unplugging');

    const late = nextEvent(vms, 'deviceRemoved');
    fake.emitDeviceRemoved(ref.uuid, 'ua-late');
    const [vmId, ev] = (await late) as [string, DeviceRemovedEvent];
    expect(vmId).toBe(ref.uuid);
    expect(ev).toEqual({ alias: 'ua-late', memSize: 1024, late: true });
    const s = vms.stats(ref.uuid);
    expect(s.memoryDevices).toEqual([]);
    // Guaranteed was 1152: lowered so it never exceeds memory.
    expect(s.memGuaranteedSize).toBe(1024);
  });

  it('recovers an unplug that completed while the connection was down, and one done while the daemon was away', async () => {
    const a = fake.addDomain({ memoryMiB: 1024, unplug: 'silent', silentDelayMs: 10 });
    const first = await manager();
    await first.vms.hotplugMemory(a.uuid, { size: 128, node: 0, alias: 'ua-r1' });
    await first.vms.hotplugMemory(a.uuid, { size: 128, node: 0, alias: 'ua-r2' });
    expect(await reason(first.vms.hotunplugMemory(a.uuid, dimm('ua-r1'), { timeoutMs: 100 }))).toBe(
      'timeout',
    );
    expect(await reason(first.vms.hotunplugMemory(a.uuid, dimm('ua-r2'), { timeoutMs: 100 }))).toBe(
      'timeout',
    );

    // Connection down: the event is lost; the resync after reconnecting notices.
    const late = nextEvent(
      first.vms,
      'deviceRemoved',
      (_id, ev) => (ev as DeviceRemovedEvent).alias === 'ua-r1',
    );
    fake.dropConnections();
    fake.emitDeviceRemoved(a.uuid, 'ua-r1');
    const [, ev] = (await late) as [string, DeviceRemovedEvent];
    expect(ev).toEqual({ alias: 'ua-r1', memSize: 1152, late: true });
    expect(first.vms.stats(a.uuid).memoryDevices.map((d) => [d.alias, d.state])).toEqual([
      ['ua-r2', 'unplugging'],
    ]);

    // Daemon away: a new manager reads the mark from metadata and sees the DIMM gone.
    await first.vms.close();
    fake.emitDeviceRemoved(a.uuid, 'ua-r2');
    const second = await manager();
    expect(second.vms.stats(a.uuid).memoryDevices).toEqual([]);
    expect(second.vms.stats(a.uuid).memSize).toBe(1024);
    // ...and has cleared it from the metadata: a third one sees nothing pending.
    await second.vms.close();
    const third = await manager();
    expect(third.vms.stats(a.uuid).memoryDevices).toEqual([]);
  });

  it('guest rejection, VM destroyed mid-unplug, and event-before-reply success', async () => {
    const rej = fake.addDomain({ memoryMiB: 1024, unplug: 'reject' });
    const silent = fake.addDomain({ memoryMiB: 1024, unplug: 'silent', silentDelayMs: 5_000 });
    const quick = fake.addDomain({
      memoryMiB: 1024,
      unplug: 'release',
      eventBeforeReply: true,
      eventDelayMs: 0,
    });
    const { vms } = await manager();
    for (const d of [rej, silent, quick])
      await vms.hotplugMemory(d.uuid, { size: 128, node: 0, alias: 'ua-x' });

    const failed = nextEvent(vms, 'deviceRemovalFailed');
    expect(await reason(vms.hotunplugMemory(rej.uuid, dimm('ua-x')))).toBe('guest-rejected');
    expect((await failed)[1]).toEqual({ alias: 'ua-x', reason: 'guest-rejected' });
    expect(vms.stats(rej.uuid).memoryDevices[0]?.state).toBe('plugged');

    const pending = reason(vms.hotunplugMemory(silent.uuid, dimm('ua-x'), { timeoutMs: 30_000 }));
    await nextEvent(
      vms,
      'vmStatus',
      (s) => (s as VmStats).vmId === silent.uuid && (s as VmStats).memoryDevices[0]?.state === 'unplugging',
    );
    // vm-gone, not the 30 s timeout: the stop settled the waiter.
    fake.destroyDomain(silent.uuid);
    expect(await pending).toBe('vm-gone');

    const r = await vms.hotunplugMemory(quick.uuid, dimm('ua-x'));
    expect(r).toEqual({ status: 'removed', alias: 'ua-x', memSize: 1024, memGuaranteedSize: 1024 });
  });

  it('validates before touching libvirt', async () => {
    const d = fake.addDomain({ memoryMiB: 1024, dimms: [{ alias: 'dimm0', sizeMiB: 256 }] });
    const off = fake.addDomain({ memoryMiB: 1024, running: false, persistent: true });
    const { vms } = await manager();
    const detaches = fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS');
    expect(await reason(vms.hotunplugMemory('00000000-0000-0000-0000-000000000000', dimm('ua-a')))).toBe(
      'no-such-vm',
    );
    expect(await reason(vms.hotunplugMemory(off.uuid, dimm('ua-a')))).toBe('not-running');
    expect(await reason(vms.hotunplugMemory(d.uuid, dimm("ua-x'/><evil")))).toBe('invalid');
    expect(await reason(vms.hotunplugMemory(d.uuid, dimm('ua-nope')))).toBe('device-not-found');
    // Present at first sight under a libvirt name: taken as a boot-time DIMM.
    expect(await reason(vms.hotunplugMemory(d.uuid, { alias: 'dimm0', size: 256, node: 0 }))).toBe(
      'not-hotplugged',
    );
    expect(await reason(vms.hotunplugMemory(d.uuid, { alias: 'dimm0', size: 128, node: 0 }))).toBe('invalid');
    expect(fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS')).toBe(detaches);
    expect(await reason(vms.hotplugMemory(d.uuid, { size: 100, node: 0 }))).toBe('invalid');
    expect(await reason(vms.hotplugMemory(d.uuid, { size: 128, node: 3 }))).toBe('invalid');
    expect(await reason(vms.hotplugMemory(d.uuid, { size: 128, node: 0, alias: "ua-x'/><evil" }))).toBe(
      'invalid',
    );
    expect(await reason(vms.hotplugMemory(d.uuid, { size: 128 * 64, node: 0 }))).toBe('invalid');
    expect(await reason(vms.hotplugMemory(off.uuid, { size: 128, node: 0 }))).toBe('not-running');
    // Only a boot-time DIMM: any decrease goes below base + boot DIMMs (1280 MiB).
    expect(await reason(vms.setMemory(d.uuid, 1000 * 1024 * 1024))).toBe('below-minimum');
    expect(await reason(vms.setMemory(d.uuid, 1300 * 1024 * 1024))).toBe('invalid');
  });

  it('a thousand VMs: start, and allStats from cache without a libvirt call', async () => {
    for (let i = 0; i < 1000; i++) {
      fake.addDomain({ memoryMiB: 1024, dimms: [{ alias: `ua-d${i}`, sizeMiB: 128 }] });
    }
    const { vms } = await manager();
    expect(vms.list()).toHaveLength(1000);
    // How fast is bench's business (bench/scale.bench.ts); here: served from cache.
    const procs = [
      'DOMAIN_GET_XML_DESC',
      'DOMAIN_GET_STATE',
      'CONNECT_LIST_ALL_DOMAINS',
      'DOMAIN_GET_METADATA',
    ];
    const before = procs.map((p) => fake.callCount(p));
    const all = vms.allStats();
    expect(all).toHaveLength(1000);
    expect(all[0]?.memoryDevices).toHaveLength(1);
    expect(procs.map((p) => fake.callCount(p))).toEqual(before);
  });
});
