// The whole daemon (child process, JSON-RPC over WebSocket) against our fake
// libvirtd, for faults a real host cannot produce on demand: the libvirt
// connection dropped mid-call, device-removed before the detach reply, events
// for aliases nobody waits for, a libvirtd that accepts but never answers,
// and rejecting / silent guests.
import { describe, expect, it } from 'vitest';
import type { AddDomainOptions } from '../fakes/fake-libvirtd.js';
import type { Stats } from '../helpers/api-types.js';
import { type FakeDaemon, type FakeDaemonOptions, waitFor } from '../helpers/fake-daemon.js';
import { fakeDaemonPerTest } from '../helpers/fake-daemon-fixture.js';
import { type TestRpcClient as Client, expectRpcError, vmStatusStats } from '../helpers/rpc-client.js';

const t = fakeDaemonPerTest();

async function daemon(o: FakeDaemonOptions = {}): Promise<{ c: Client; d: FakeDaemon }> {
  const { c, fd } = await t.start({ unplugTimeoutS: 5, ...o });
  return { c, d: fd };
}

function vm(o: Omit<Partial<AddDomainOptions>, 'dimms'> & { dimms?: string[] } = {}): string {
  const { dimms, ...rest } = o;
  return t.fake.addDomain({
    memoryMiB: 1024,
    ...rest,
    dimms: (dimms ?? []).map((alias) => ({ alias, sizeMiB: 128 })),
  }).uuid;
}

const unplug = (vmId: string, alias: string, timeout?: number) => ({
  vmID: vmId,
  params: { vmId, memory: { size: 128, node: 0, alias } },
  ...(timeout === undefined ? {} : { timeout }),
});
const plug = (vmId: string, alias: string) => ({
  vmID: vmId,
  params: { vmId, memory: { size: 128, node: 0, alias } },
});

async function timed<T>(p: Promise<T>): Promise<{ v: T; ms: number }> {
  const t0 = performance.now();
  const v = await p;
  return { v, ms: performance.now() - t0 };
}

const devices = (s: Stats) => s.memoryDevices.map((x) => [x.alias, x.state]);

describe('daemon on the fake libvirtd: faults', () => {
  it('connection dropped mid-call: a detach that went through completes, a lost call fails clearly (85/70 libvirt-error), and later operations work', async () => {
    const a = vm({ dimms: ['ua-a1', 'ua-a2'], eventBeforeReply: true, eventDelayMs: 400 });
    const { c, d } = await daemon();
    const log = d.daemon;

    // 1. Drop while the detach call is in flight (libvirt blocks in it until the guest answers):
    // the request reached libvirtd, the guest releases; after reconnecting the daemon learns it.
    const detaches = t.fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS');
    const first = c.call<{ status: string; memSize: number }>('VM.hotunplugMemory', unplug(a, 'ua-a1', 10));
    // Dropped once libvirtd has the detach (dropped before, it would never happen: a timeout).
    await waitFor(
      'the detach to reach libvirtd',
      () => t.fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS') > detaches,
    );
    t.fake.dropConnections();
    const r1 = await first;
    expect(r1).toMatchObject({ status: 'removed', memSize: 1024 + 128 });
    await c.waitForNotification(
      (n) => n.method === `|virt|device_removed|${a}` && (n.params as { alias: string }).alias === 'ua-a1',
    );
    await log.waitForLog((l) => l.msg === 'libvirt connection restored');

    // 2. Drop while a call is lost (libvirtd read it and never answered): the unplug fails at
    // once with 85 libvirt-error naming the lost connection; the DIMM stays plugged.
    t.fake.stall(true);
    const lostUnplug = c.call('VM.hotunplugMemory', unplug(a, 'ua-a2', 10));
    await log.waitForLog((l) => l.msg === 'started' && l.operation === 'hotunplug' && l.alias === 'ua-a2');
    const before = t.fake.connectionCount;
    expect(before).toBe(1);
    t.fake.dropConnections();
    t.fake.stall(false);
    const { v: e1, ms: ms1 } = await timed(expectRpcError(lostUnplug));
    expect(e1.code).toBe(85);
    expect(e1.reason).toBe('libvirt-error');
    expect(e1.message).toMatch(/connection|not connected|socket|ECONNRESET/i);
    // Before the unplug's own 10 s timeout: the lost connection ended the wait.
    expect(ms1).toBeLessThan(10_000);

    // Same for a hot plug whose attach was lost: 70 libvirt-error, nothing plugged.
    await waitReconnected(c, log);
    // Only the attach is lost (the migration check's job stats before it are answered).
    t.fake.stall(true, ['DOMAIN_ATTACH_DEVICE_FLAGS']);
    const lostPlug = c.call('VM.hotplugMemory', plug(a, 'ua-p1'));
    await log.waitForLog((l) => l.msg === 'attach requested' && l.alias === 'ua-p1');
    t.fake.dropConnections();
    t.fake.stall(false);
    const e2 = await expectRpcError(lostPlug);
    expect(e2.code).toBe(70);
    expect(e2.reason).toBe('libvirt-error');
    expect(t.fake.getDomainState(a)?.liveDimms).toEqual(['ua-a2']);

    // 3. The daemon reconnected and works: stats from libvirt, then a plug and an unplug.
    await waitReconnected(c, log);
    const s = await c.stats(a);
    expect(devices(s)).toEqual([['ua-a2', 'plugged']]);
    await c.call('VM.hotplugMemory', plug(a, 'ua-p1'));
    await expect(c.call('VM.hotunplugMemory', unplug(a, 'ua-a2', 10))).resolves.toMatchObject({
      status: 'removed',
    });
    await expect(c.call('VM.hotunplugMemory', unplug(a, 'ua-p1', 10))).resolves.toMatchObject({
      status: 'removed',
      memSize: 1024,
    });
    expect(t.fake.getDomainState(a)?.liveDimms).toEqual([]);
    expect(log.running).toBe(true);
  });

  it('device-removed arriving before the detach reply still completes the unplug', async () => {
    const a = vm({ dimms: ['ua-e1'], eventBeforeReply: true, eventDelayMs: 0 });
    const { c } = await daemon();
    const r = await c.call('VM.hotunplugMemory', unplug(a, 'ua-e1', 3));
    expect(r).toEqual({ status: 'removed', alias: 'ua-e1', memSize: 1024, memGuaranteedSize: 1024 });
    const n = await c.waitForNotification((x) => x.method === `|virt|device_removed|${a}`);
    expect(n.params).toEqual({ alias: 'ua-e1', memSize: 1024, late: false });
    expect((await c.stats(a)).memoryDevices).toEqual([]);
  });

  it('events for aliases nobody waits for: a late removal after a timeout, and a removal nobody asked for', async () => {
    const a = vm({ dimms: ['ua-s1', 'ua-s2', 'ua-s3'], unplug: 'silent', silentDelayMs: 10 });
    const { c } = await daemon();
    await c.call('VM.hotplugMemory', {
      vmID: a,
      params: { vmId: a, memory: { size: 128, node: 0, alias: 'ua-s4' }, memGuaranteedSize: 1536 },
    });

    // Silent guest: 85 timeout at the requested timeout, the DIMM stays unplugging, a second try
    // says already-unplugging at once.
    const { v: e, ms } = await timed(expectRpcError(c.call('VM.hotunplugMemory', unplug(a, 'ua-s4', 0.5))));
    expect([e.code, e.reason]).toEqual([85, 'timeout']);
    expect(ms).toBeGreaterThanOrEqual(450);
    const s0 = await c.stats(a);
    expect(devices(s0)).toContainEqual(['ua-s4', 'unplugging']);
    const again = await timed(expectRpcError(c.call('VM.hotunplugMemory', unplug(a, 'ua-s4', 5))));
    expect([again.v.code, again.v.reason]).toEqual([85, 'already-unplugging']);
    // Refused up front, not after waiting on the guest for its 5 s timeout.
    expect(again.ms).toBeLessThan(5_000);

    // The guest releases it later: device_removed with late: true, memory and guaranteed lowered.
    t.fake.emitDeviceRemoved(a, 'ua-s4');
    const late = await c.waitForNotification(
      (n) => n.method === `|virt|device_removed|${a}` && (n.params as { alias: string }).alias === 'ua-s4',
    );
    expect(late.params).toEqual({ alias: 'ua-s4', memSize: 1024 + 3 * 128, late: true });
    const s1 = await c.stats(a);
    expect(devices(s1)).toEqual([
      ['ua-s1', 'plugged'],
      ['ua-s2', 'plugged'],
      ['ua-s3', 'plugged'],
    ]);
    expect(s1.memSize).toBe(1024 + 3 * 128);
    expect(s1.memGuaranteedSize).toBe(1024 + 3 * 128);

    // A DIMM nobody was unplugging vanishes (someone else's detach): state follows, VM_status goes out.
    const statusCount = c.notifications.length;
    t.fake.emitDeviceRemoved(a, 'ua-s2');
    const st = await c.waitForNotification(
      (n) =>
        c.notifications.indexOf(n) >= statusCount &&
        n.method === `|virt|VM_status|${a}` &&
        !vmStatusStats(n, a).memoryDevices.some((x) => x.alias === 'ua-s2'),
    );
    expect(vmStatusStats(st, a).memSize).toBe(1024 + 2 * 128);
    expect(vmStatusStats(st, a).hash).not.toBe(s1.hash);
    const s2 = await c.stats(a);
    expect(devices(s2)).toEqual([
      ['ua-s1', 'plugged'],
      ['ua-s3', 'plugged'],
    ]);
    // Not reported as a removal of ours.
    expect(
      c.notifications.some(
        (n) => n.method === `|virt|device_removed|${a}` && (n.params as { alias: string }).alias === 'ua-s2',
      ),
    ).toBe(false);
  });

  it('VM_status shows unplugging only for a removal that lasts: none for a quick removal or rejection, before the removal for a slow one', async () => {
    const quick = vm({ dimms: ['ua-q1'], eventBeforeReply: true, eventDelayMs: 0 });
    const rejecting = vm({ dimms: ['ua-j1'], unplug: 'reject', eventDelayMs: 0 });
    const slow = vm({ dimms: ['ua-w1'], unplug: 'silent' });
    const { c } = await daemon();
    /** From `from` on: each of vmId's notifications, a VM_status as the state of `alias` ('gone' once removed). */
    const seen = (vmId: string, alias: string, from: number) =>
      c.notifications.slice(from).flatMap((n) => {
        if (n.method === `|virt|VM_status|${vmId}`) {
          const d = vmStatusStats(n, vmId).memoryDevices.find((x) => x.alias === alias);
          return [`VM_status ${d?.state ?? 'gone'}`];
        }
        return n.method.endsWith(`|${vmId}`) ? [n.method.split('|')[2]] : [];
      });

    const q0 = c.notifications.length;
    await c.call('VM.hotunplugMemory', unplug(quick, 'ua-q1'));
    const j0 = c.notifications.length;
    const rejected = await expectRpcError(c.call('VM.hotunplugMemory', unplug(rejecting, 'ua-j1')));
    expect([rejected.code, rejected.reason]).toEqual([85, 'guest-rejected']);

    // The silent guest's removal is announced once it has lasted; by then any
    // announcement still due for the two earlier ones would have gone out too.
    const w0 = c.notifications.length;
    const slowCall = c.call<{ status: string }>('VM.hotunplugMemory', unplug(slow, 'ua-w1', 10));
    await c.waitForNotification(
      (n) =>
        n.method === `|virt|VM_status|${slow}` &&
        vmStatusStats(n, slow).memoryDevices.some((x) => x.alias === 'ua-w1' && x.state === 'unplugging'),
    );
    t.fake.emitDeviceRemoved(slow, 'ua-w1');
    expect((await slowCall).status).toBe('removed');

    expect(seen(quick, 'ua-q1', q0)).toEqual(['VM_status gone', 'device_removed']);
    // Back to what clients last heard: no VM_status at all.
    expect(seen(rejecting, 'ua-j1', j0)).toEqual(['device_removal_failed']);
    expect(seen(slow, 'ua-w1', w0)).toEqual(['VM_status unplugging', 'VM_status gone', 'device_removed']);
  });

  it('a guest that rejects: 85 guest-rejected well before the timeout, twice, and the DIMM stays plugged', async () => {
    const a = vm({ dimms: ['ua-r1'], unplug: 'reject', eventDelayMs: 50 });
    const { c } = await daemon();
    for (let i = 0; i < 2; i++) {
      const { v: e, ms } = await timed(expectRpcError(c.call('VM.hotunplugMemory', unplug(a, 'ua-r1', 10))));
      expect([e.code, e.reason]).toEqual([85, 'guest-rejected']);
      // Before the 10 s timeout: the rejection ended the wait.
      expect(ms).toBeLessThan(10_000);
    }
    const n = await c.waitForNotification((x) => x.method === `|virt|device_removal_failed|${a}`);
    expect(n.params).toEqual({ alias: 'ua-r1', reason: 'guest-rejected' });
    const s = await c.stats(a);
    expect(devices(s)).toEqual([['ua-r1', 'plugged']]);
    expect(t.fake.getDomainState(a)?.liveDimms).toEqual(['ua-r1']);
  });

  it('a libvirtd that accepts but never answers: calls fail within the call timeout, ping keeps answering, and the daemon recovers', async () => {
    const a = vm({ dimms: ['ua-t1', 'ua-t2'] });
    const { c, d } = await daemon({
      config: '[libvirt]\ncall_timeout = 1\nkeepalive_interval = 1\nkeepalive_count = 2\n',
    });
    const log = d.daemon;
    t.fake.stall(true);

    let hungSettled = false;
    const plugging = timed(expectRpcError(c.call('VM.hotplugMemory', plug(a, 'ua-t3'))));
    const unplugging = timed(expectRpcError(c.call('VM.hotunplugMemory', unplug(a, 'ua-t1', 10))));
    void Promise.race([plugging, unplugging]).then(() => {
      hungSettled = true;
    });
    // The event loop is free while libvirt calls hang: ping and cached reads answer before
    // either hung call has settled.
    for (let i = 0; i < 5; i++) {
      expect(await c.call('Host.ping')).toBe(true);
    }
    const st = await c.stats(a);
    expect(hungSettled).toBe(false);
    expect(devices(st)).toContainEqual(['ua-t2', 'plugged']);

    const p1 = await plugging;
    expect([p1.v.code, p1.v.reason]).toEqual([70, 'libvirt-error']);
    const u1 = await unplugging;
    expect([u1.v.code, u1.v.reason]).toEqual([85, 'libvirt-error']);
    // The 1 s call timeout, not the unplug's 10 s one, ended it.
    expect(u1.ms).toBeLessThan(10_000);

    // Keepalive declares the silent peer dead; the daemon keeps trying to reconnect.
    await log.waitForLog((l) => l.msg === 'libvirt connection lost; reconnecting', 10_000);
    const caps = await c.call<{ libvirtConnected: boolean }>('Host.getCapabilities');
    expect(caps.libvirtConnected).toBe(false);
    const down = await timed(expectRpcError(c.call('VM.hotunplugMemory', unplug(a, 'ua-t1', 10))));
    expect([down.v.code, down.v.reason]).toEqual([85, 'libvirt-error']);
    // Refused while disconnected, not after the unplug's 10 s timeout.
    expect(down.ms).toBeLessThan(10_000);
    expect(await c.call('Host.ping')).toBe(true);

    t.fake.stall(false);
    await waitReconnected(c, log, 20_000);
    const s = await c.stats(a);
    expect(devices(s)).toEqual([
      ['ua-t1', 'plugged'],
      ['ua-t2', 'plugged'],
    ]);
    await expect(c.call('VM.hotunplugMemory', unplug(a, 'ua-t1', 10))).resolves.toMatchObject({
      status: 'removed',
      memSize: 1024 + 128,
    });
    await expect(c.call<Stats>('VM.hotplugMemory', plug(a, 'ua-t3'))).resolves.toMatchObject({
      memSize: 1024 + 256,
    });
    expect(log.running).toBe(true);
  });
});

/** The daemon's libvirt link is back (Host.getCapabilities says so). */
async function waitReconnected(c: Client, log: FakeDaemon['daemon'], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const caps = await c.call<{ libvirtConnected: boolean }>('Host.getCapabilities');
    if (caps.libvirtConnected) break;
    if (Date.now() > deadline) throw new Error(`daemon did not reconnect within ${timeoutMs} ms`);
    // Wait for the next log line rather than spinning.
    const n = log.logs.length;
    await log.waitForLog((_l) => log.logs.length > n, deadline - Date.now()).catch(() => undefined);
  }
}
