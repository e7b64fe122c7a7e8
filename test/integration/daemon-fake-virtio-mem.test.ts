// VM.resizeMemoryDevice against the fake libvirtd, for what a real guest does
// not do on demand: a driver that moves too slowly for the deadline, one that
// floods size changes (coalescing), one that never moves, a VM that stops
// mid-resize.
import { describe, expect, it } from 'vitest';
import type { VirtioMemBehaviour } from '../fakes/fake-libvirtd.js';
import type { Stats } from '../helpers/api-types.js';
import type { FakeDaemon } from '../helpers/fake-daemon.js';
import { waitFor } from '../helpers/fake-daemon.js';
import { fakeDaemonPerTest } from '../helpers/fake-daemon-fixture.js';
import { metricsUrlOf, scrape } from '../helpers/prom-text.js';
import { type TestRpcClient as Client, expectRpcError } from '../helpers/rpc-client.js';

const t = fakeDaemonPerTest();
/** The daemon the running test started last (setup(), then restarts). */
let fd: FakeDaemon | undefined;

async function setup(
  behaviour: VirtioMemBehaviour,
  stallS = 1,
  more = '',
): Promise<{ c: Client; uuid: string }> {
  const ref = t.fake.addDomain({
    memoryMiB: 512,
    virtioMem: [{ alias: 'ua-vm0', sizeMiB: 2048 }],
    virtioMemBehaviour: behaviour,
  });
  const started = await t.start({ config: `[memory]\nresize_stall_timeout = ${stallS}\n${more}` });
  fd = started.fd;
  return { c: started.c, uuid: ref.uuid };
}

interface Resized {
  alias: string;
  requested: number;
  current: number;
  memSize: number;
}

describe('VM.resizeMemoryDevice on the fake', () => {
  it('a driver too slow for the deadline: 85 timeout with the current reached, requested settled there', async () => {
    const { c, uuid } = await setup({ mode: 'follow', stepMiB: 2, stepMs: 100 }, 30);
    const e = await expectRpcError(
      c.call('VM.resizeMemoryDevice', { vmID: uuid, alias: 'ua-vm0', requested: 1024, timeout: 1 }),
    );
    expect(e.code).toBe(85);
    const data = e.error.data as { reason: string; current: number; requestedNow: number; requested: number };
    expect(data.reason).toBe('timeout');
    expect(data.requested).toBe(1024);
    expect(data.current).toBeGreaterThan(0);
    expect(data.current).toBeLessThan(1024);
    const [dev] = t.fake.getVirtioMem(uuid);
    // Settled: the fake guest is asked for what it had when the call gave up (it may have moved one more step).
    expect(dev?.requestedMiB).toBe(data.requestedNow);
    expect(Math.abs(data.requestedNow - data.current)).toBeLessThanOrEqual(2);
  });

  it('floods of size changes are coalesced, in order, ending at the requested size, then the final VM_status', async () => {
    const { c, uuid } = await setup({ mode: 'follow', stepMiB: 2, stepMs: 2 });
    const mark = c.notifications.length;
    const t0 = performance.now();
    const r = await c.call<Resized>('VM.resizeMemoryDevice', { vmID: uuid, alias: 'ua-vm0', requested: 512 });
    const seconds = (performance.now() - t0) / 1000;
    expect(r).toEqual({
      alias: 'ua-vm0',
      requested: 512,
      current: 512,
      memSize: 1024,
      nextRun: { updated: false, requested: 512 },
    });
    const notes = c.notifications.slice(mark).filter((n) => n.method.endsWith(uuid));
    const sizes = notes
      .filter((n) => n.method.startsWith('|virt|memory_device_size_changed|'))
      .map((n) => (n.params as { current: number }).current);
    // 256 moves of 2 MiB; at most one notification per 250 ms plus the first and the last.
    expect(sizes.length).toBeLessThanOrEqual(Math.ceil(seconds / 0.25) + 2);
    expect(sizes.length).toBeLessThan(256);
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]!).toBeGreaterThan(sizes[i - 1]!);
    expect(sizes.at(-1)).toBe(512);
    const last = notes.at(-1)!;
    expect(last.method).toBe(`|virt|VM_status|${uuid}`);
    // VDSM's VM_status shape: {<vmId>: stats, notify_time}.
    expect((last.params as Record<string, Stats>)[uuid]?.memSize).toBe(1024);
    const m = await scrape(metricsUrlOf(fd!.daemon.url));
    expect(m.count('vmhostd_resize_duration_seconds', { outcome: 'resized' })).toBe(1);
    expect(m.value('vmhostd_operations_total', { method: 'resize', outcome: 'ok' })).toBe(1);
    expect(m.value('vmhostd_virtio_mem_devices', { state: 'plugged' })).toBe(1);
    expect(m.value('vmhostd_dimms', { state: 'plugged' })).toBe(0);
  });

  it('at the size by the cache only: another client shrank the device and no event has come yet; the call reads libvirt and grows it', async () => {
    const { c, uuid } = await setup({ mode: 'follow', stepMiB: 128, stepMs: 5 });
    const grow = { vmID: uuid, alias: 'ua-vm0', requested: 512, timeout: 30 };
    await expect(c.call<Resized>('VM.resizeMemoryDevice', grow)).resolves.toMatchObject({ current: 512 });
    // virsh update-memory-device on another connection; QEMU's throttled event not sent yet.
    t.fake.setVirtioMemBehaviour(uuid, { mode: 'follow', stepMiB: 512, stepMs: 5, events: false });
    t.fake.setRequested(uuid, 'ua-vm0', 0);
    await waitFor('the guest to give it back', () => t.fake.getVirtioMem(uuid)[0]?.currentMiB === 0);
    t.fake.setVirtioMemBehaviour(uuid, { mode: 'follow', stepMiB: 128, stepMs: 5 });
    // The daemon's cache still says 512 of 512.
    const [s] = await c.call<Stats[]>('VM.getStats', { vmID: uuid });
    expect(s?.memoryDevices[0]).toMatchObject({ requested: 512, current: 512 });
    await expect(c.call<Resized>('VM.resizeMemoryDevice', grow)).resolves.toMatchObject({
      requested: 512,
      current: 512,
    });
    expect(t.fake.getVirtioMem(uuid)).toEqual([{ alias: 'ua-vm0', requestedMiB: 512, currentMiB: 512 }]);
  });

  it('a driver that never moves: stalled after the stall period, current unchanged, requested settled back', async () => {
    const { c, uuid } = await setup({ mode: 'silent' }, 1);
    const e = await expectRpcError(
      c.call('VM.resizeMemoryDevice', { vmID: uuid, alias: 'ua-vm0', requested: 256, timeout: 60 }),
    );
    expect([e.code, e.reason]).toEqual([85, 'stalled']);
    expect(e.error.data).toMatchObject({ alias: 'ua-vm0', requested: 256, current: 0, requestedNow: 0 });
    expect(t.fake.getVirtioMem(uuid)).toEqual([{ alias: 'ua-vm0', requestedMiB: 0, currentMiB: 0 }]);
    // The metrics observe the resize by its outcome, like an unplug.
    const m = await scrape(metricsUrlOf(fd!.daemon.url));
    expect(m.count('vmhostd_resize_duration_seconds', { outcome: 'stalled' })).toBe(1);
    expect(m.sum('vmhostd_resize_duration_seconds', { outcome: 'stalled' })).toBeGreaterThan(0);
    expect(m.value('vmhostd_operations_total', { method: 'resize', outcome: 'stalled' })).toBe(1);
  });

  it('libvirt stops answering re-reads when the resize stalls: the call is answered with the sizes last read (unconfirmed), and the settle is reported late once libvirt answers', async () => {
    // A read libvirt does not answer fails after the call timeout (1 s here); the
    // stall period leaves room to stop the reads after the update's re-read.
    const { c, uuid } = await setup({ mode: 'silent' }, 3, '[libvirt]\ncall_timeout = 1\n');
    const p = expectRpcError(
      c.call('VM.resizeMemoryDevice', { vmID: uuid, alias: 'ua-vm0', requested: 256, timeout: 300 }),
    );
    // The re-read after the update showed the new requested; from now on the live XML cannot be read.
    await c.waitForNotification(
      (n) =>
        n.method === `|virt|memory_device_size_changed|${uuid}` &&
        (n.params as { requested: number }).requested === 256,
    );
    t.fake.stall(true, ['DOMAIN_GET_XML_DESC']);
    // Before the fix the call waited for a re-read that succeeds: here, for as long as libvirt stays stalled.
    const e = await p;
    expect([e.code, e.reason]).toEqual([85, 'stalled']);
    expect(e.error.data).toMatchObject({
      alias: 'ua-vm0',
      requested: 256,
      current: 0,
      requestedNow: 256,
      onFailure: 'settle',
      unconfirmed: true,
    });
    expect(e.error.message).toContain('unconfirmed');
    // Not settled yet: that needs a re-read of where it stopped.
    expect(t.fake.getVirtioMem(uuid)).toEqual([{ alias: 'ua-vm0', requestedMiB: 256, currentMiB: 0 }]);
    const [s] = await c.call<Stats[]>('VM.getStats', { vmID: uuid });
    expect(s?.memoryDevices[0]).toMatchObject({ state: 'resizing', requested: 256, current: 0 });
    t.fake.stall(false);
    // The worker's retry reads it, settles requested at the current, and tells the end.
    const n = await c.waitForNotification((x) => x.method === `|virt|memory_device_resize_failed|${uuid}`);
    expect(n.params).toEqual({
      alias: 'ua-vm0',
      reason: 'stalled',
      requested: 256,
      current: 0,
      requestedNow: 0,
      late: true,
    });
    expect(t.fake.getVirtioMem(uuid)).toEqual([{ alias: 'ua-vm0', requestedMiB: 0, currentMiB: 0 }]);
    const [after] = await c.call<Stats[]>('VM.getStats', { vmID: uuid });
    expect(after?.memoryDevices[0]).toMatchObject({ state: 'plugged', requested: 0, current: 0 });
  });

  it('the VM stops mid-resize: 85 vm-gone at once, not at the deadline', async () => {
    const { c, uuid } = await setup({ mode: 'follow', stepMiB: 2, stepMs: 50 }, 30);
    const p = expectRpcError(
      c.call('VM.resizeMemoryDevice', { vmID: uuid, alias: 'ua-vm0', requested: 1024, timeout: 300 }),
    );
    await c.waitForNotification((n) => n.method === `|virt|memory_device_size_changed|${uuid}`);
    t.fake.destroyDomain(uuid);
    const e = await p;
    expect([e.code, e.reason]).toEqual([85, 'vm-gone']);
  });

  it('a resize in flight when the daemon is killed: the restarted daemon adopts its mark, shows it resizing and reports its completion late', async () => {
    const { c, uuid } = await setup({ mode: 'follow', stepMiB: 8, stepMs: 400 }, 30);
    void c
      .call('VM.resizeMemoryDevice', { vmID: uuid, alias: 'ua-vm0', requested: 256, timeout: 300 })
      .catch(() => undefined);
    await c.waitForNotification((n) => n.method === `|virt|memory_device_size_changed|${uuid}`);
    // Still pending after a second: recorded in metadata for a restart.
    await fd?.daemon.waitForLog((l) => l.msg === 'marked resizing', 10_000);
    await c.close();
    await fd?.daemon.kill();
    const second = await t.start({ config: '[memory]\nresize_stall_timeout = 30\n' });
    fd = second.fd;
    const c2 = second.c;
    try {
      // VDSM's shape: a list of one VmStats.
      const [s] = await c2.call<Stats[]>('VM.getStats', { vmID: uuid });
      const dev = s?.memoryDevices.find((d) => d.alias === 'ua-vm0');
      // Still on its way (the fake guest needs 32 steps of 400 ms): requested 256, current below.
      expect(dev).toMatchObject({ model: 'virtio-mem', requested: 256, state: 'resizing' });
      expect(dev?.current).toBeLessThan(256);
      const done = await c2.waitForNotification(
        (n) =>
          n.method === `|virt|memory_device_size_changed|${uuid}` &&
          (n.params as { current: number }).current === 256,
        30_000,
      );
      // Nobody waits for it any more: its end is an outcome, marked late.
      expect(done.params).toEqual({ alias: 'ua-vm0', requested: 256, current: 256, late: true });
      const final = await c2.waitForNotification(
        (n) =>
          n.method === `|virt|VM_status|${uuid}` &&
          (n.params as Record<string, Stats>)[uuid]?.memSize === 512 + 256,
      );
      expect((final.params as Record<string, Stats>)[uuid]?.memoryDevices[0]).toMatchObject({
        state: 'plugged',
        current: 256,
      });
    } finally {
      await c2.close();
    }
  });

  it('a guest that goes silent across a restart: the adopted resize stalls after it, reported late with the true current and settled', async () => {
    const { c, uuid } = await setup({ mode: 'silent' }, 30);
    void c
      .call('VM.resizeMemoryDevice', { vmID: uuid, alias: 'ua-vm0', requested: 256, timeout: 300 })
      .catch(() => undefined);
    await fd?.daemon.waitForLog((l) => l.msg === 'marked resizing', 10_000);
    await c.close();
    await fd?.daemon.kill();
    expect(t.fake.getVirtioMem(uuid)).toEqual([{ alias: 'ua-vm0', requestedMiB: 256, currentMiB: 0 }]);
    const second = await t.start({ config: '[memory]\nresize_stall_timeout = 1\n' });
    fd = second.fd;
    const c2 = second.c;
    try {
      const n = await c2.waitForNotification(
        (x) => x.method === `|virt|memory_device_resize_failed|${uuid}`,
        30_000,
      );
      expect(n.params).toEqual({
        alias: 'ua-vm0',
        reason: 'stalled',
        requested: 256,
        current: 0,
        requestedNow: 0,
        late: true,
      });
      // Settled before it was told: the guest is no longer asked for what it cannot do.
      expect(t.fake.getVirtioMem(uuid)).toEqual([{ alias: 'ua-vm0', requestedMiB: 0, currentMiB: 0 }]);
      const [s] = await c2.call<Stats[]>('VM.getStats', { vmID: uuid });
      expect(s?.memoryDevices[0]).toMatchObject({ state: 'plugged', requested: 0, current: 0 });
      const m = await scrape(metricsUrlOf(fd.daemon.url));
      expect(m.value('vmhostd_late_resizes_total', { outcome: 'stalled' })).toBe(1);
      // The mark is gone: another restart reports nothing again.
      await c2.close();
      await fd.daemon.kill();
      const third = await t.start({ config: '[memory]\nresize_stall_timeout = 1\n' });
      fd = third.fd;
      const c3 = third.c;
      try {
        const events = await c3.call<{ events: { method: string }[] }>('Host.getEvents', { since: 0 });
        expect(events.events.filter((e) => e.method.includes('memory_device'))).toEqual([]);
      } finally {
        await c3.close();
      }
    } finally {
      await c2.close();
    }
  });
});
