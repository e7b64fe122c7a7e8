// VmManager against the host's real libvirtd, the real LibvirtClient and real
// QEMU guests: the semantics of hot plug, hot unplug and set memory as an
// engine sees them through src/virt.

import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSocketPath, LibvirtClient } from '../../src/libvirt/index.js';
import { VirtError } from '../../src/virt/errors.js';
import type { VmStats } from '../../src/virt/types.js';
import { VmManager } from '../../src/virt/vm-manager.js';
import { type Guest, hostReady, useGuests, virsh } from '../helpers/guest.js';

let client: LibvirtClient;
let vms: VmManager;
const guests = useGuests();
/** Other test files' daemons share this libvirtd: stay out of their VMs. */
const ownVms = (name: string) => name.startsWith('vmhostd-test-virt-');
const MiB = 1024 * 1024;

beforeAll(async () => {
  await hostReady();
  client = await LibvirtClient.connect({ socketPath: defaultSocketPath() });
  vms = await VmManager.start(client, {
    log: pino({ level: process.env.VMHOST_TEST_LOG ?? 'silent' }),
    unplugTimeoutMs: 30_000,
    dimmAlignmentMiB: 128,
    manages: ownVms,
  });
});

afterAll(async () => {
  await vms?.close();
  await client?.close();
});

/** Resolves with the VM's stats once pred holds (now or on a later vmStatus event). */
function waitForStats(vmId: string, pred: (s: VmStats) => boolean, ms = 30_000): Promise<VmStats> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      try {
        const s = vms.stats(vmId);
        if (!pred(s)) return false;
        cleanup();
        resolve(s);
        return true;
      } catch {
        return false;
      }
    };
    const onStatus = (s: VmStats) => {
      if (s.vmId === vmId) check();
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`VM ${vmId}: stats never matched within ${ms} ms`));
    }, ms);
    const cleanup = () => {
      clearTimeout(timer);
      vms.off('vmStatus', onStatus);
    };
    vms.on('vmStatus', onStatus);
    check();
  });
}

async function startUp(opts: Parameters<typeof guests.start>[0]): Promise<Guest> {
  const g = await guests.start(opts);
  await waitForStats(g.uuid, (s) => s.status === 'Up');
  return g;
}

async function virtError(p: Promise<unknown>): Promise<VirtError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof VirtError) {
      if (process.env.DBG) console.log('DBG', err.reason, err.message, err.details);
      return err;
    }
    throw err;
  }
  throw new Error('expected a VirtError');
}

async function inactiveMemoryMiB(name: string): Promise<number> {
  const xml = await virsh(['dumpxml', '--inactive', name]);
  const m = xml.match(/<memory unit='KiB'>(\d+)<\/memory>/);
  if (!m) throw new Error('no <memory> in inactive XML');
  return Number(m[1]) / 1024;
}

describe('VmManager on a real libvirtd', () => {
  it('cooperative guest: plug two DIMMs, unplug one; boot DIMM refused; concurrent unplugs serialised', async () => {
    const g = await startUp({ kind: 'cooperative', bootDimmsMiB: [128], namePrefix: 'virt-coop' });
    const s0 = vms.stats(g.uuid);
    expect(s0.memSize).toBe(640);
    expect(s0.memoryDevices.map((d) => d.alias)).toEqual(['dimm0']);
    const m0 = await g.memTotalKiB();

    const boot = await virtError(vms.hotunplugMemory(g.uuid, { alias: 'dimm0', size: 128, node: 0 }));
    expect(boot.reason).toBe('not-hotplugged');

    await vms.hotplugMemory(g.uuid, { size: 128, node: 0, alias: 'ua-virt-a' });
    const s2 = await vms.hotplugMemory(g.uuid, { size: 128, node: 0 });
    expect(s2.memSize).toBe(896);
    const b = s2.memoryDevices.find((d) => d.alias !== 'dimm0' && d.alias !== 'ua-virt-a');
    expect(b?.alias).toMatch(/^ua-[0-9a-f-]{36}$/);
    expect(b?.slot).toBe(2);
    // Both plugged DIMMs are online in the guest before we take one away.
    await g.waitForMemTotal((kib) => kib >= m0 + 250 * 1024, 60_000);

    const removed: { alias: string; late: boolean }[] = [];
    const onRemoved = (vmId: string, ev: { alias: string; late: boolean }) => {
      if (vmId === g.uuid) removed.push(ev);
    };
    vms.on('deviceRemoved', onRemoved);
    const r = await vms.hotunplugMemory(
      g.uuid,
      { alias: 'ua-virt-a', size: 128, node: 0 },
      { memGuaranteedSize: 700 },
    );
    expect(r).toEqual({ status: 'removed', alias: 'ua-virt-a', memSize: 768, memGuaranteedSize: 700 });
    expect(removed).toEqual([{ alias: 'ua-virt-a', memSize: 768, late: false }]);
    const s3 = vms.stats(g.uuid);
    expect(s3.hash).not.toBe(s2.hash);
    expect(s3.memoryDevices.map((d) => d.alias)).not.toContain('ua-virt-a');
    expect(await virsh(['dumpxml', g.name])).not.toContain('ua-virt-a');
    await g.waitForMemTotal((kib) => kib <= m0 + 130 * 1024, 30_000);

    const gone = await virtError(vms.hotunplugMemory(g.uuid, { alias: 'ua-virt-a', size: 128, node: 0 }));
    expect(gone.reason).toBe('device-not-found');

    // Two unplugs sent at once run one after the other and both succeed.
    await vms.hotplugMemory(g.uuid, { size: 128, node: 0, alias: 'ua-virt-c' });
    const order: string[] = [];
    vms.on('deviceRemoved', (vmId, ev) => {
      if (vmId === g.uuid) order.push(`removed:${ev.alias}`);
    });
    const [r1, r2] = await Promise.all([
      vms.hotunplugMemory(g.uuid, { alias: b!.alias, size: 128, node: 0 }),
      vms.hotunplugMemory(g.uuid, { alias: 'ua-virt-c', size: 128, node: 0 }),
    ]);
    expect(r1.memSize).toBe(768);
    expect(r2.memSize).toBe(640);
    expect(order).toEqual([`removed:${b!.alias}`, 'removed:ua-virt-c']);
    // Guaranteed never exceeds memory.
    expect(vms.stats(g.uuid).memGuaranteedSize).toBeLessThanOrEqual(640);
    vms.off('deviceRemoved', onRemoved);
  });

  it('rejecting guest: guest-rejected well before the timeout, DIMM still plugged, same answer twice', async () => {
    const g = await startUp({ kind: 'rejecting', namePrefix: 'virt-rej' });
    const m0 = await g.memTotalKiB();
    await vms.hotplugMemory(g.uuid, { size: 128, node: 0, alias: 'ua-rej' });
    await g.waitForMemTotal((kib) => kib >= m0 + 120 * 1024, 60_000);
    const failed: string[] = [];
    vms.on('deviceRemovalFailed', (vmId, ev) => {
      if (vmId === g.uuid) failed.push(ev.reason);
    });
    for (let i = 0; i < 2; i++) {
      // guest-rejected, not the 25 s timeout: the rejection itself ended the wait.
      const err = await virtError(
        vms.hotunplugMemory(g.uuid, { alias: 'ua-rej', size: 128, node: 0 }, { timeoutMs: 25_000 }),
      );
      expect(err.kind).toBe('hotunplug');
      expect(err.reason).toBe('guest-rejected');
      const d = vms.stats(g.uuid).memoryDevices.find((x) => x.alias === 'ua-rej');
      expect(d?.state).toBe('plugged');
    }
    expect(failed).toEqual(['guest-rejected', 'guest-rejected']);
    expect(await virsh(['dumpxml', g.name])).toContain('ua-rej');
  });

  it('silent guest: timeout then already-unplugging; VM destroyed mid-unplug gives vm-gone at once', async () => {
    const g = await startUp({ kind: 'silent', namePrefix: 'virt-silent' });
    await vms.hotplugMemory(g.uuid, { size: 128, node: 0, alias: 'ua-s1' });
    await vms.hotplugMemory(g.uuid, { size: 128, node: 0, alias: 'ua-s2' });
    const t0 = Date.now();
    const err = await virtError(
      vms.hotunplugMemory(g.uuid, { alias: 'ua-s1', size: 128, node: 0 }, { timeoutMs: 8_000 }),
    );
    expect(err.reason).toBe('timeout');
    // Never before the requested timeout.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(8_000);
    expect(vms.stats(g.uuid).memoryDevices.find((d) => d.alias === 'ua-s1')?.state).toBe('unplugging');
    // The mark is in the domain's own metadata (survives a daemon restart).
    expect(await virsh(['metadata', g.name, 'http://ovirt.org/vmhostd/1.0'])).toContain('ua-s1');
    const again = await virtError(vms.hotunplugMemory(g.uuid, { alias: 'ua-s1', size: 128, node: 0 }));
    expect(again.reason).toBe('already-unplugging');

    // A second manager (a restarted daemon) sees the unplug still requested.
    const other = await VmManager.start(client, {
      log: pino({ level: 'silent' }),
      unplugTimeoutMs: 30_000,
      dimmAlignmentMiB: 128,
      manages: ownVms,
    });
    try {
      expect(other.stats(g.uuid).memoryDevices.find((d) => d.alias === 'ua-s1')?.state).toBe('unplugging');
      expect(other.stats(g.uuid).memoryDevices.find((d) => d.alias === 'ua-s2')?.state).toBe('plugged');
    } finally {
      await other.close();
    }

    const pending = virtError(
      vms.hotunplugMemory(g.uuid, { alias: 'ua-s2', size: 128, node: 0 }, { timeoutMs: 60_000 }),
    );
    await waitForStats(
      g.uuid,
      (s) => s.memoryDevices.find((d) => d.alias === 'ua-s2')?.state === 'unplugging',
    );
    // vm-gone, not the 60 s timeout: the stop ended the wait.
    await virsh(['destroy', g.name]);
    const gone = await pending;
    expect(gone.reason).toBe('vm-gone');
    await g.destroy();
    await expect(async () => vms.stats(g.uuid)).rejects.toMatchObject({ kind: 'no-such-vm' });
  });

  it('setMemory: the worked example on a persistent guest, then next-run left alone when it differs', async () => {
    const g = await startUp({
      kind: 'cooperative',
      persistent: true,
      memoryMiB: 1024,
      namePrefix: 'virt-setmem',
    });
    expect(await inactiveMemoryMiB(g.name)).toBe(1024);
    const m0 = await g.memTotalKiB();
    for (const [i, size] of [256, 256, 128, 128].entries()) {
      await vms.hotplugMemory(g.uuid, { size, node: 0, alias: `ua-w${i}` });
    }
    expect(vms.stats(g.uuid).memSize).toBe(1792);
    expect(await inactiveMemoryMiB(g.name)).toBe(1792);
    await g.waitForMemTotal((kib) => kib >= m0 + 760 * 1024, 60_000);

    // guaranteed > memory: rejected, nothing changes.
    const bad = await virtError(vms.setMemory(g.uuid, 1400 * MiB, { guaranteedBytes: 1500 * MiB }));
    expect(bad.kind).toBe('invalid');
    expect(bad.details).toMatchObject({ field: 'guaranteed' });
    expect(vms.stats(g.uuid).memSize).toBe(1792);

    const r = await vms.setMemory(g.uuid, 1400 * MiB, { guaranteedBytes: 900 * MiB });
    expect(r.unplugged.map((u) => u.size)).toEqual([256, 128]);
    expect(r).toMatchObject({
      memSize: 1408,
      memGuaranteedSize: 900,
      failed: [],
      nextRun: { updated: true, memory: 1400, guaranteed: 900 },
    });
    expect(await inactiveMemoryMiB(g.name)).toBe(1400);
    await g.waitForMemTotal((kib) => kib <= m0 + 386 * 1024, 30_000);

    // Running 1408 != next-run 1400: the next run is not touched.
    const r2 = await vms.setMemory(g.uuid, 1280 * MiB);
    expect(r2.unplugged.map((u) => u.size)).toEqual([128]);
    expect(r2.memSize).toBe(1280);
    expect(r2.nextRun).toEqual({ updated: false, memory: 1400, guaranteed: 900 });
    expect(await inactiveMemoryMiB(g.name)).toBe(1400);

    const none = await virtError(vms.setMemory(g.uuid, 1200 * MiB));
    expect(none.reason).toBe('no-suitable-device');
    expect(vms.stats(g.uuid).memSize).toBe(1280);
  });
});
